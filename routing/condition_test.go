package routing

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// Conditions gate groups and announces through the Snapshot: a condition
// missing from it is down, unlike a gateway.
func TestDesiredConditions(t *testing.T) {
	p := mustPolicy(t, `
[gateway.a]
address = "198.18.1.1"
interface = "eth1"

[group.wan]
gateways = ["a"]
condition = "master"
last_resort = "remove"

[condition.master]
all = ["address 198.18.0.100 on eth0"]

[announce.vip]
prefix = "198.18.0.100/32"
track = "master"
dev = "eth0"
type = "unicast"

[announce.svc]
prefix = "198.18.50.0/24"
track = "master"
type = "blackhole"
`)
	for _, tc := range []struct {
		name string
		h    Snapshot
		want string
	}{
		{"condition unknown: down", Snapshot{"a": Up}, ``},
		{"condition down", Snapshot{"a": Up, ConditionKey("master"): Down}, ``},
		{"condition up", Snapshot{"a": Up, ConditionKey("master"): Up}, `
			default via 198.18.1.1 dev eth1 table main proto 212
			198.18.0.100/32 dev eth0 table main proto 212
			blackhole 198.18.50.0/24 table main proto 212`},
		{"condition up, gateway down: last_resort as ever", Snapshot{"a": Down, ConditionKey("master"): Up}, `
			198.18.0.100/32 dev eth0 table main proto 212
			blackhole 198.18.50.0/24 table main proto 212`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(dump(tc.want), Format(Desired(p, tc.h))); diff != "" {
				t.Errorf("Desired (-want +got):\n%s", diff)
			}
		})
	}
}
