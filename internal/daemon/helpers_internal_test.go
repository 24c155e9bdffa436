package daemon

import (
	"log/slog"
	"net/netip"
)

func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func mustAddr(s string) netip.Addr     { return netip.MustParseAddr(s) }

var errNo = errorString("no\nreally")

type errorString string

func (e errorString) Error() string { return string(e) }

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }
