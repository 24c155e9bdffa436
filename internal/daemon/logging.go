package daemon

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/coreos/go-systemd/v22/journal"
)

func parseLevel(level string) (slog.Level, error) {
	switch strings.ToLower(level) {
	case "debug":
		return slog.LevelDebug, nil
	case "", "info":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("choosing log level: %q is not debug, info, warn or error", level)
}

// NewLogger returns the daemon's logger: text or JSON on w at the given
// level ("debug", "info", "warn", "error").
func NewLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	lv, err := parseLevel(level)
	if err != nil {
		return nil, err
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch strings.ToLower(format) {
	case "", "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("choosing log format: %q is not text or json", format)
}

// newRunLogger is the logger of `uplinkd run`. Under systemd, with stderr
// connected to journald and the default text format, records go to the
// journal natively, with priorities and fields; text remains the fallback
// if journald refuses one. "json" is kept as asked, for pipelines that
// parse it.
func newRunLogger(stderr *os.File, format, level string) (*slog.Logger, error) {
	log, err := NewLogger(stderr, format, level)
	if err != nil {
		return nil, err
	}
	if strings.ToLower(format) == "json" || !isJournalStream(stderr, os.Getenv("JOURNAL_STREAM")) || !journal.Enabled() {
		return log, nil
	}
	lv, _ := parseLevel(level) // NewLogger accepted it
	return slog.New(newJournalHandler(journal.Send, lv, log.Handler())), nil
}
