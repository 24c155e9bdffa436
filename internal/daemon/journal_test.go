package daemon

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/coreos/go-systemd/v22/journal"
	"github.com/google/go-cmp/cmp"
)

type journalEntry struct {
	Msg    string
	Pri    journal.Priority
	Fields map[string]string
}

func TestJournalHandler(t *testing.T) {
	var got []journalEntry
	send := func(msg string, pri journal.Priority, f map[string]string) error {
		got = append(got, journalEntry{msg, pri, f})
		return nil
	}
	log := slog.New(newJournalHandler(send, slog.LevelInfo, nil))
	log.Debug("hidden", "gateway", "isp1")
	log.Info("gateway down", "gateway", "isp1", "iface", "eth1", "table", 254, "took", 1500*time.Millisecond)
	log.Warn("reload: this setting only changes on restart", "setting", "listen")
	log.With("gateway", "isp2").WithGroup("probe").Error("reload refused", "err", errors.New("policy x is invalid"), "kind", "icmp",
		slog.Group("target", "addr", "198.18.100.1"), "9lives", true, "_trusted", "no")
	base := map[string]string{"SYSLOG_IDENTIFIER": "uplinkd"}
	with := func(kv ...string) map[string]string {
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	want := []journalEntry{
		{"gateway down", journal.PriInfo, with("GATEWAY", "isp1", "IFACE", "eth1", "TABLE", "254", "TOOK", "1.5s")},
		{"reload: this setting only changes on restart", journal.PriWarning, with("SETTING", "listen")},
		{"reload refused", journal.PriErr, with("GATEWAY", "isp2", "PROBE_ERR", "policy x is invalid", "PROBE_KIND", "icmp",
			"PROBE_TARGET_ADDR", "198.18.100.1", "PROBE_9LIVES", "true", "PROBE__TRUSTED", "no")},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("journal entries (-want +got):\n%s", d)
	}
	for _, tc := range []struct{ key, want string }{
		{"gateway", "GATEWAY"}, {"last-rx.age", "LAST_RX_AGE"}, {"_x", "X"}, {"9a", "F9A"}, {"", "F"},
	} {
		if f := journalField(tc.key); f != tc.want {
			t.Errorf("journalField(%q) = %q, want %q", tc.key, f, tc.want)
		}
	}
}

// TestJournalHandlerFallsBack: a record journald refuses is written as
// text instead of being lost.
func TestJournalHandlerFallsBack(t *testing.T) {
	var b bytes.Buffer
	fb := slog.NewTextHandler(&b, &slog.HandlerOptions{Level: slog.LevelDebug})
	h := newJournalHandler(func(string, journal.Priority, map[string]string) error { return errors.New("no journald") }, slog.LevelDebug, fb)
	slog.New(h).With("gateway", "isp1").Error("writing track file", "err", "disk full")
	if want := "level=ERROR msg=\"writing track file\" gateway=isp1 err=\"disk full\"\n"; !bytes.HasSuffix(b.Bytes(), []byte(want)) {
		t.Errorf("fallback wrote %q, want it to end in %q", b.String(), want)
	}
}

// TestIsJournalStream: the switch to the native protocol happens only when
// JOURNAL_STREAM names the very file stderr is.
func TestIsJournalStream(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "stderr")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	match := fmt.Sprintf("%d:%d", st.Dev, st.Ino)
	other := fmt.Sprintf("%d:%d", st.Dev, st.Ino+1)
	for _, tc := range []struct {
		env  string
		want bool
	}{{match, true}, {other, false}, {"", false}, {"garbage", false}} {
		if got := isJournalStream(f, tc.env); got != tc.want {
			t.Errorf("isJournalStream(JOURNAL_STREAM=%q) = %v, want %v", tc.env, got, tc.want)
		}
	}
}
