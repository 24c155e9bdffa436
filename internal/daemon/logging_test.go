package daemon

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestNewLogger(t *testing.T) {
	var b bytes.Buffer
	log, err := NewLogger(&b, "json", "warn")
	if err != nil {
		t.Fatal(err)
	}
	log.Info("hidden", "gateway", "isp1")
	log.Warn("shown", "gateway", "isp1", "iface", "eth1", "table", 254)
	var rec map[string]any
	if err := json.Unmarshal(b.Bytes(), &rec); err != nil {
		t.Fatalf("not one JSON record: %v\n%s", err, b.String())
	}
	if rec["msg"] != "shown" || rec["gateway"] != "isp1" || rec["iface"] != "eth1" || rec["table"] != float64(254) {
		t.Errorf("record %v", rec)
	}
	b.Reset()
	log, _ = NewLogger(&b, "text", "debug")
	log.Debug("d", "group", "wan")
	if !strings.Contains(b.String(), "level=DEBUG msg=d group=wan") {
		t.Errorf("text record %q", b.String())
	}
	for _, bad := range [][2]string{{"xml", "info"}, {"text", "loud"}} {
		if _, err := NewLogger(&b, bad[0], bad[1]); err == nil {
			t.Errorf("NewLogger(%q, %q) accepted", bad[0], bad[1])
		}
	}
}
