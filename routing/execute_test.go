package routing

import "testing"

// noKernel is a Netlink whose every method panics (a nil embedded
// interface): a test through it proves that no call reaches the kernel.
type noKernel struct{ Netlink }

// An op of an object kind the reconciler has no write path for is an
// error: it never falls through into another kind's write.
func TestExecuteRefusesUnknownObject(t *testing.T) {
	k := noKernel{}
	rec, err := NewReconciler(Config{Netlink: k, Protocol: 212})
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Close()
	rt := own(201, gw1, "eth1")
	ru := srcRule(1000, 201)
	errs, applied, _ := rec.execute([]Op{{Kind: OpAdd, Object: Object(99), Route: &rt, Rule: &ru}}, links{}, false)
	if len(errs) != 1 || len(applied) != 0 || rec.Writes() != 0 {
		t.Errorf("unknown object: errs %v, applied %v, %d writes; want one error and no write", errs, applied, rec.Writes())
	}
}
