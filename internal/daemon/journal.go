package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/journal"
)

// journalSender is journal.Send; tests record instead.
type journalSender func(msg string, pri journal.Priority, fields map[string]string) error

// journalHandler is a slog.Handler that speaks journald's native protocol:
// each record is one journal entry with its syslog priority (so
// `journalctl -p err` shows the errors and only them) and every attribute
// as a field of its own (GATEWAY=isp1, IFACE=eth1, ERR=..., so
// `journalctl GATEWAY=isp1` selects one gateway's story). Attributes in a
// group are prefixed with the group's name (GROUP_KEY).
type journalHandler struct {
	send     journalSender
	level    slog.Leveler
	fallback slog.Handler // where a record goes if journald refuses it
	fields   map[string]string
	prefix   string
}

func newJournalHandler(send journalSender, level slog.Leveler, fallback slog.Handler) *journalHandler {
	return &journalHandler{send: send, level: level, fallback: fallback, fields: map[string]string{"SYSLOG_IDENTIFIER": "uplinkd"}}
}

// journalPriority maps slog levels to syslog priorities.
func journalPriority(l slog.Level) journal.Priority {
	switch {
	case l >= slog.LevelError:
		return journal.PriErr
	case l >= slog.LevelWarn:
		return journal.PriWarning
	case l >= slog.LevelInfo:
		return journal.PriInfo
	}
	return journal.PriDebug
}

// journalField turns an attribute key into a journal field name: upper
// case letters, digits and underscores, not starting with an underscore
// or a digit (journald drops such fields, or treats them as trusted).
func journalField(key string) string {
	var b strings.Builder
	for _, r := range strings.ToUpper(key) {
		if (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9') || r == '_' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	f := strings.TrimLeft(b.String(), "_")
	if f == "" || (f[0] >= '0' && f[0] <= '9') {
		f = "F" + f
	}
	return f
}

func (h *journalHandler) Enabled(_ context.Context, l slog.Level) bool {
	return l >= h.level.Level()
}

func (h *journalHandler) Handle(ctx context.Context, r slog.Record) error {
	fields := make(map[string]string, len(h.fields)+r.NumAttrs())
	for k, v := range h.fields {
		fields[k] = v
	}
	r.Attrs(func(a slog.Attr) bool {
		addJournalAttr(fields, h.prefix, a)
		return true
	})
	if err := h.send(r.Message, journalPriority(r.Level), fields); err != nil && h.fallback != nil {
		return h.fallback.Handle(ctx, r)
	}
	return nil
}

func addJournalAttr(fields map[string]string, prefix string, a slog.Attr) {
	v := a.Value.Resolve()
	if v.Kind() == slog.KindGroup {
		p := prefix
		if a.Key != "" {
			p += a.Key + "_"
		}
		for _, ga := range v.Group() {
			addJournalAttr(fields, p, ga)
		}
		return
	}
	if a.Key == "" {
		return
	}
	var s string
	switch v.Kind() {
	case slog.KindTime:
		s = v.Time().Format(time.RFC3339Nano)
	case slog.KindDuration:
		s = v.Duration().String()
	default:
		s = v.String()
	}
	fields[journalField(prefix+a.Key)] = s
}

func (h *journalHandler) WithAttrs(as []slog.Attr) slog.Handler {
	n := *h
	n.fields = make(map[string]string, len(h.fields)+len(as))
	for k, v := range h.fields {
		n.fields[k] = v
	}
	for _, a := range as {
		addJournalAttr(n.fields, h.prefix, a)
	}
	if h.fallback != nil {
		n.fallback = h.fallback.WithAttrs(as)
	}
	return &n
}

func (h *journalHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	n := *h
	n.prefix = h.prefix + name + "_"
	if h.fallback != nil {
		n.fallback = h.fallback.WithGroup(name)
	}
	return &n
}

// isJournalStream reports whether f is the stream journald gave the
// service, as systemd.exec(5) tells it in JOURNAL_STREAM ("DEV:INODE"):
// only then is switching to the native protocol right. A stderr
// redirected elsewhere (a pipe to a test, a file) keeps plain text.
func isJournalStream(f *os.File, env string) bool {
	if env == "" || f == nil {
		return false
	}
	var dev, ino uint64
	if _, err := fmt.Sscanf(env, "%d:%d", &dev, &ino); err != nil {
		return false
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		return false
	}
	return uint64(st.Dev) == dev && st.Ino == ino
}
