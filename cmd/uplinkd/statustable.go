package main

import (
	"bytes"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/uplinkd/uplinkd/internal/daemon"
)

// narrowWidth is what `uplinkd status` fits by default: a terminal of 100
// columns shows every line whole or cut with "…"; --wide shows all.
const narrowWidth = 100

// writeNarrow prints the status with the columns an operator reads first
// (no evidence ages, no probe rate) and cuts every line to narrowWidth.
func writeNarrow(w io.Writer, st *daemon.Status) error {
	var b bytes.Buffer
	if err := daemon.WriteTable(&b, st); err != nil {
		return err
	}
	var out strings.Builder
	var d dropper
	for _, line := range strings.SplitAfter(b.String(), "\n") {
		nl := strings.HasSuffix(line, "\n")
		line = strings.TrimSuffix(line, "\n")
		rows := strings.Split(d.wrapReason(d.drop(line)), "\n")
		for i, r := range rows {
			out.WriteString(cut(r, narrowWidth))
			if i < len(rows)-1 || nl {
				out.WriteByte('\n')
			}
		}
	}
	_, err := io.WriteString(w, out.String())
	return err
}

// wideOnly are the gateway table's columns that only --wide shows.
var wideOnly = []string{"CONFIRMED", "RX", "TX", "GOOD PROBE", "PROBES/S"}

// dropper removes the wide-only columns from the gateway table. The table
// is aligned by tabwriter and every cell before REASON is ASCII (names are
// checked by the policy), so the header's byte offsets hold for every row;
// the group table that follows has its own header and is kept whole.
type dropper struct {
	columns [][2]int // byte ranges to drop, from the gateway header
	reason  int      // where REASON starts once they are dropped; 0 outside the table
}

// wrapReason moves a gateway row's reason to a line of its own when the
// row would not fit: the reason is the one free-text, unbounded column.
func (d *dropper) wrapReason(line string) string {
	if d.reason == 0 || strings.HasPrefix(line, "GATEWAY ") || len(line) <= d.reason || utf8.RuneCountInString(line) <= narrowWidth {
		return line
	}
	return strings.TrimRight(line[:d.reason], " ") + "\n    reason: " + cut(line[d.reason:], narrowWidth-len("    reason: "))
}

func (d *dropper) drop(line string) string {
	switch {
	case strings.HasPrefix(line, "GATEWAY "):
		d.columns, d.reason = nil, 0
		for _, name := range wideOnly {
			i := strings.Index(line, " "+name+" ")
			if i < 0 {
				continue
			}
			start := i + 1
			end := start + len(name)
			for end < len(line) && line[end] == ' ' {
				end++
			}
			d.columns = append(d.columns, [2]int{start, end})
		}
	case line == "" || strings.HasPrefix(line, "GROUP "):
		d.columns, d.reason = nil, 0
		return line
	}
	if d.columns == nil {
		return line
	}
	var b strings.Builder
	prev := 0
	for _, c := range d.columns {
		if c[0] > len(line) {
			break
		}
		b.WriteString(line[prev:c[0]])
		prev = min(c[1], len(line))
	}
	b.WriteString(line[min(prev, len(line)):])
	out := b.String()
	if strings.HasPrefix(line, "GATEWAY ") {
		d.reason = strings.Index(out, " REASON") + 1
	}
	return out
}

// cut shortens s to width runes, ending in "…" when it cut.
func cut(s string, width int) string {
	if utf8.RuneCountInString(s) <= width {
		return s
	}
	r := []rune(s)
	return string(r[:width-1]) + "…"
}
