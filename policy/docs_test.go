package policy

import (
	"fmt"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// docKeys walks the raw policy structs and returns every key the parser
// accepts as it is written in docs/configuration.md: "gateway.NAME.probe.icmp".
// A struct type met a second time (rawProfile under gateway.NAME.detect) is
// not expanded again; the doc must say "`PREFIX.*`" for it instead, and it is
// returned in aliases.
func docKeys() (keys []string, aliases map[string]string) {
	aliases = map[string]string{}
	seen := map[reflect.Type]string{}
	unmarshaler := reflect.TypeFor[interface{ UnmarshalTOML(any) error }]()
	var walk func(t reflect.Type, prefix string)
	walk = func(t reflect.Type, prefix string) {
		for i := range t.NumField() {
			f := t.Field(i)
			tag, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
			if tag == "" || tag == "-" {
				continue
			}
			key := tag
			if prefix != "" {
				key = prefix + "." + tag
			}
			ft := f.Type
			if ft.Kind() == reflect.Map {
				ft, key = ft.Elem(), key+".NAME"
			}
			if ft.Kind() == reflect.Struct && !reflect.PointerTo(ft).Implements(unmarshaler) {
				if first, ok := seen[ft]; ok {
					aliases[key] = first
					continue
				}
				seen[ft] = key
				walk(ft, key)
				continue
			}
			keys = append(keys, key)
		}
	}
	walk(reflect.TypeFor[rawFile](), "")
	return keys, aliases
}

// docRow matches a key's row in a reference table: | `key` | type | default | ...
var docRow = regexp.MustCompile("(?m)^\\| `([a-zA-Z0-9_.*]+)` \\| ([^|]*) \\| ([^|]*) \\|")

func readConfigDoc(t *testing.T) (rows map[string][2]string, text string) {
	t.Helper()
	data, err := os.ReadFile("../docs/configuration.md")
	if err != nil {
		t.Fatalf("reading the configuration reference: %v", err)
	}
	rows = map[string][2]string{}
	for _, m := range docRow.FindAllStringSubmatch(string(data), -1) {
		if _, dup := rows[m[1]]; dup {
			t.Errorf("docs/configuration.md documents %s twice", m[1])
		}
		rows[m[1]] = [2]string{strings.TrimSpace(m[2]), strings.TrimSpace(m[3])}
	}
	return rows, string(data)
}

// TestConfigurationDocCoversEveryKey fails when the parser accepts a key
// that docs/configuration.md has no row for, or when the doc has a row for a
// key the parser would reject as unknown.
func TestConfigurationDocCoversEveryKey(t *testing.T) {
	keys, aliases := docKeys()
	if len(keys) < 60 {
		t.Fatalf("found only %d keys in rawFile; is the walk broken?", len(keys))
	}
	rows, text := readConfigDoc(t)
	for _, k := range keys {
		if _, ok := rows[k]; !ok {
			t.Errorf("docs/configuration.md has no row for `%s` (the parser accepts it)", k)
		}
	}
	for alias, first := range aliases {
		if !strings.Contains(text, "`"+alias+".*`") {
			t.Errorf("docs/configuration.md does not say that `%s.*` takes the keys of %s", alias, first)
		}
	}
	for k := range rows {
		if !slices.Contains(keys, k) {
			t.Errorf("docs/configuration.md documents `%s`, which the parser does not accept", k)
		}
	}
}

// TestConfigurationDocDefaults checks the default column against the
// values the parser really fills in, so the reference cannot drift from
// DefaultProfile and the Default* constants.
func TestConfigurationDocDefaults(t *testing.T) {
	rows, _ := readConfigDoc(t)
	want := map[string]any{
		"daemon.listen":                DefaultListen,
		"daemon.route_protocol":        DefaultRouteProtocol,
		"daemon.rule_priorities":       fmt.Sprintf("%d-%d", DefaultRuleBandMin, DefaultRuleBandMax),
		"daemon.log_format":            "text",
		"daemon.log_level":             "info",
		"daemon.on_exit":               OnExitLeave,
		"daemon.control_socket":        DefaultControlSocket,
		"daemon.resync_interval":       DefaultResync,
		"daemon.multipath":             string(MultipathAuto),
		"hook.NAME.timeout":            DefaultHookTimeout,
		"gateway.NAME.weight":          1,
		"gateway.NAME.tier":            1,
		"gateway.NAME.on_down":         TableKeep,
		"gateway.NAME.profile":         "default",
		"gateway.NAME.probe.pin":       PinDevice,
		"gateway.NAME.flush_conntrack": string(FlushNever),
		"group.NAME.last_resort":       LastResortKeep,
		"group.NAME.buckets":           DefaultBuckets,
		"group.NAME.idle_timer":        DefaultIdleTimer,
		"group.NAME.unbalanced_timer":  time.Duration(DefaultUnbalancedTimer),
		"announce.NAME.type":           AnnounceUnicast,

		"gateway.NAME.bfd.min_tx":     DefaultBFDInterval,
		"gateway.NAME.bfd.min_rx":     DefaultBFDInterval,
		"gateway.NAME.bfd.multiplier": DefaultBFDMult,
		"gateway.NAME.bfd.down":       BFDDownImmediate,
		"gateway.NAME.bfd.auth":       BFDAuthNone,
	}
	// Every profile key against DefaultProfile, field by field.
	def := reflect.ValueOf(DefaultProfile())
	rt := reflect.TypeFor[rawProfile]()
	for i := range rt.NumField() {
		f := rt.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		v := def.FieldByName(f.Name)
		if !v.IsValid() {
			t.Fatalf("rawProfile.%s has no Profile field of the same name", f.Name)
		}
		want["profile.NAME."+tag] = v.Interface()
	}
	// The same defaults must come out of the parser for a policy that sets
	// nothing but one gateway in a group.
	p, err := Parse("minimal.toml", []byte(minimalPolicy), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Daemon.Listen != DefaultListen || p.Daemon.ResyncEvery != DefaultResync || p.Daemon.OnExit != want["daemon.on_exit"] {
		t.Fatalf("a minimal policy's [daemon] does not carry the documented defaults: %+v", p.Daemon)
	}

	for key, w := range want {
		row, ok := rows[key]
		if !ok {
			t.Errorf("no row for `%s`", key)
			continue
		}
		cell := strings.Trim(strings.TrimSpace(row[1]), "`")
		cell = strings.Trim(cell, `"`)
		if err := sameValue(cell, w); err != nil {
			t.Errorf("`%s`: documented default %q: %v", key, row[1], err)
		}
	}
}

func sameValue(cell string, want any) error {
	var got any
	var err error
	switch w := want.(type) {
	case time.Duration:
		got, err = time.ParseDuration(cell)
	case int:
		got, err = strconv.Atoi(cell)
	case float64:
		got, err = strconv.ParseFloat(cell, 64)
	case bool:
		got, err = strconv.ParseBool(cell)
	case string:
		got = cell
	default:
		// Typed enums (Gating, Pin, OnDown, LastResort) are strings.
		if rv := reflect.ValueOf(w); rv.Kind() == reflect.String {
			if cell != rv.String() {
				return fmt.Errorf("the parser's default is %v", want)
			}
			return nil
		}
		return fmt.Errorf("no comparison for %T", w)
	}
	if err != nil {
		return err
	}
	if got != want {
		return fmt.Errorf("the parser's default is %v", want)
	}
	return nil
}
