package policy

import (
	"strconv"
	"strings"
)

// keyIndex maps dotted key paths ("gateway.isp2.weight") to where they are
// written. BurntSushi/toml keeps its key positions private, and errors found
// after decoding (duplicates, cross references, ranges) still deserve a
// line and a column. The scanner understands the subset of TOML a policy
// uses: [table] and [[array]] headers, key = value lines with bare, quoted
// or dotted keys, and multi-line strings and arrays, which it skips.
type keyIndex map[string]pos

type pos struct{ line, col, keyCol int }

func indexKeys(data []byte) keyIndex {
	idx := keyIndex{}
	var table []string
	inMulti := "" // the closing delimiter of a multi-line string we are inside
	depth := 0    // open brackets of a multi-line array value
	for n, line := range strings.Split(string(data), "\n") {
		lineNo := n + 1
		if inMulti != "" {
			if strings.Contains(line, inMulti) {
				inMulti = ""
			}
			continue
		}
		if depth > 0 {
			depth += bracketDelta(line)
			continue
		}
		trimmed := strings.TrimLeft(line, " \t")
		col := len(line) - len(trimmed) + 1
		if trimmed == "" || trimmed[0] == '#' {
			continue
		}
		if trimmed[0] == '[' {
			hdr := strings.TrimPrefix(trimmed, "[[")
			if hdr == trimmed {
				hdr = strings.TrimPrefix(trimmed, "[")
			}
			end := strings.Index(hdr, "]")
			if end < 0 {
				continue
			}
			table = splitKey(hdr[:end])
			key := strings.Join(table, ".")
			if _, ok := idx[key]; !ok {
				idx[key] = pos{lineNo, col, col}
			}
			continue
		}
		eq := indexUnquoted(trimmed, '=')
		if eq < 0 {
			continue
		}
		parts := append(append([]string{}, table...), splitKey(trimmed[:eq])...)
		key := strings.Join(parts, ".")
		rest := trimmed[eq+1:]
		val := strings.TrimLeft(rest, " \t")
		if _, ok := idx[key]; !ok {
			// Point at the value: that is what the error is about.
			idx[key] = pos{lineNo, col + eq + 1 + len(rest) - len(val), col}
		}
		val = strings.TrimSpace(val)
		for _, delim := range []string{`"""`, `'''`} {
			if strings.HasPrefix(val, delim) && !strings.Contains(val[3:], delim) {
				inMulti = delim
			}
		}
		if strings.HasPrefix(val, "[") {
			depth = bracketDelta(val)
		}
	}
	return idx
}

// lookupKey returns where the key itself (not its value) is written.
func (idx keyIndex) lookupKey(path ...string) (int, int) {
	if p, ok := idx[strings.Join(path, ".")]; ok {
		return p.line, p.keyCol
	}
	return idx.lookup(path...)
}

// lookup returns the position of path, or of its nearest written parent.
func (idx keyIndex) lookup(path ...string) (int, int) {
	for i := len(path); i > 0; i-- {
		if p, ok := idx[strings.Join(path[:i], ".")]; ok {
			return p.line, p.col
		}
	}
	return 0, 0
}

func splitKey(s string) []string {
	var parts []string
	var cur strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case '"':
			// Basic strings use Go-compatible escapes (\n, \u001b, ...),
			// so the decoded name matches what the TOML decoder saw.
			j := i + 1
			for j < len(s) && s[j] != '"' {
				if s[j] == '\\' {
					j++
				}
				j++
			}
			if j >= len(s) {
				cur.WriteString(s[i+1:])
				i = len(s)
				continue
			}
			if u, err := strconv.Unquote(s[i : j+1]); err == nil {
				cur.WriteString(u)
			} else {
				cur.WriteString(s[i+1 : j])
			}
			i = j
		case '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				cur.WriteString(s[i+1:])
				i = len(s)
				continue
			}
			cur.WriteString(s[i+1 : i+1+j])
			i += j + 1
		case '.':
			parts = append(parts, strings.TrimSpace(cur.String()))
			cur.Reset()
		default:
			cur.WriteByte(c)
		}
	}
	return append(parts, strings.TrimSpace(cur.String()))
}

func indexUnquoted(s string, want byte) int {
	quote := byte(0)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0 && c == quote:
			quote = 0
		case quote != 0:
		case c == '"' || c == '\'':
			quote = c
		case c == '#':
			return -1
		case c == want:
			return i
		}
	}
	return -1
}

// bracketDelta counts [ minus ] outside strings and comments.
func bracketDelta(s string) int {
	d := 0
	quote := byte(0)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0 && c == '\\' && quote == '"':
			i++
		case quote != 0 && c == quote:
			quote = 0
		case quote != 0:
		case c == '"' || c == '\'':
			quote = c
		case c == '#':
			return d
		case c == '[':
			d++
		case c == ']':
			d--
		}
	}
	return d
}
