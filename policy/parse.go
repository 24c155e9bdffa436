package policy

import (
	"bytes"
	"encoding"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// Options carries the host facts a policy may refer to.
type Options struct {
	// TableNames maps rt_tables names to numbers. The kernel's own names
	// (unspec, default, main, local) are always known.
	TableNames map[string]uint32
}

// Defaults that the documentation and `uplinkd check` report.
const (
	DefaultListen        = "127.0.0.1:9474"
	DefaultRouteProtocol = 212
	DefaultRuleBandMin   = 1000
	DefaultRuleBandMax   = 1999
	DefaultControlSocket = "/run/uplinkd/control.sock"
	DefaultHookTimeout   = 10 * time.Second
	DefaultResync        = 10 * time.Second
	MaxHookTimeout       = 10 * time.Minute
	// MaxPolicySize bounds the input: real policies are a few KiB, and a
	// runaway generator or a wrong path (a log file, a core dump) should be
	// refused at once rather than parsed.
	MaxPolicySize = 1 << 20
)

// DefaultProfile is the shipped detection profile: fast under traffic,
// silent when idle, and deaf to ordinary loss (three consecutive losses at
// 1 % loss happen once in a million bursts).
func DefaultProfile() Profile {
	return Profile{
		Name:             "default",
		Gating:           GatingGated,
		Interval:         time.Second,
		FastInterval:     20 * time.Millisecond,
		Timeout:          100 * time.Millisecond,
		DownCount:        3,
		UpCount:          3,
		TxWithoutRx:      50 * time.Millisecond,
		ProbeHoldoff:     time.Second,
		ProbeHoldoffMax:  time.Minute,
		SilenceFloor:     20 * time.Millisecond,
		TimeoutFloor:     20 * time.Millisecond,
		QualityInterval:  10 * time.Second,
		StandbyInterval:  10 * time.Second,
		RecoveryInterval: time.Second,
		LinkHold:         time.Second,
		TrustNeighFailed: true,
		Window:           60 * time.Second,
		MinSamples:       5,
		LatencyThreshold: 500 * time.Millisecond,
		LossThreshold:    0.2,
		Damping:          true,
		FlapPenalty:      1000,
		SuppressAbove:    2500,
		ReuseBelow:       800,
		HalfLife:         30 * time.Second,
		MaxSuppress:      5 * time.Minute,
	}
}

type (
	fWeight   = textField[Weight, *Weight]
	fTier     = textField[Tier, *Tier]
	fTable    = textField[Table, *Table]
	fDuration = textField[Duration, *Duration]
	fRatio    = textField[Ratio, *Ratio]
	fAddr     = textField[Addr, *Addr]
	fGwAddr   = textField[GatewayAddr, *GatewayAddr]
	fPrefix   = textField[Prefix, *Prefix]
	fMark     = textField[Mark, *Mark]
	fBand     = textField[PriorityBand, *PriorityBand]
	fUint8    = textField[Uint8, *Uint8]
	fUint32   = textField[Uint32, *Uint32]
	fCount    = textField[Count, *Count]
	fFloat    = textField[Float, *Float]
	fBool     = textField[Bool, *Bool]
	fWord     = textField[Word, *Word]

	fGating     = textField[Gating, *Gating]
	fPin        = textField[Pin, *Pin]
	fOnDown     = textField[OnDown, *OnDown]
	fLastResort = textField[LastResort, *LastResort]
	fFlush      = textField[FlushConntrack, *FlushConntrack]
	fBuckets    = textField[Buckets, *Buckets]
	fMultipath  = textField[Multipath, *Multipath]
)

type rawFile struct {
	Daemon    rawDaemon               `toml:"daemon"`
	Kernel    rawKernel               `toml:"kernel"`
	Profile   map[string]rawProfile   `toml:"profile"`
	Gateway   map[string]rawGateway   `toml:"gateway"`
	Group     map[string]rawGroup     `toml:"group"`
	Rule      map[string]rawRule      `toml:"rule"`
	Announce  map[string]rawAnnounce  `toml:"announce"`
	Hook      map[string]rawHook      `toml:"hook"`
	Condition map[string]rawCondition `toml:"condition"`
}

type rawDaemon struct {
	Listen         fWord      `toml:"listen"`
	RouteProtocol  fUint8     `toml:"route_protocol"`
	RulePriorities fBand      `toml:"rule_priorities"`
	LogFormat      fWord      `toml:"log_format"`
	LogLevel       fWord      `toml:"log_level"`
	OnExit         fWord      `toml:"on_exit"`
	ControlSocket  fWord      `toml:"control_socket"`
	TrackDir       fWord      `toml:"track_dir"`
	ResyncInterval fDuration  `toml:"resync_interval"`
	HTTPHosts      []fWord    `toml:"http_hosts"`
	WebConfigFile  fWord      `toml:"web_config_file"`
	Multipath      fMultipath `toml:"multipath"`
}

type rawKernel struct {
	IgnoreRoutesWithLinkdown fBool `toml:"ignore_routes_with_linkdown"`
	FibMultipathHashPolicy   fWord `toml:"fib_multipath_hash_policy"`
	FibMultipathUseNeigh     fBool `toml:"fib_multipath_use_neigh"`
}

type rawProfile struct {
	Gating           fGating   `toml:"gating"`
	Interval         fDuration `toml:"interval"`
	FastInterval     fDuration `toml:"fast_interval"`
	Timeout          fDuration `toml:"timeout"`
	DownCount        fCount    `toml:"down_count"`
	UpCount          fCount    `toml:"up_count"`
	TxWithoutRx      fDuration `toml:"tx_without_rx"`
	ProbeHoldoff     fDuration `toml:"probe_holdoff"`
	ProbeHoldoffMax  fDuration `toml:"probe_holdoff_max"`
	SilenceFloor     fDuration `toml:"silence_floor"`
	TimeoutFloor     fDuration `toml:"timeout_floor"`
	QualityInterval  fDuration `toml:"quality_interval"`
	StandbyInterval  fDuration `toml:"standby_interval"`
	RecoveryInterval fDuration `toml:"recovery_interval"`
	LinkHold         fDuration `toml:"link_hold"`
	TrustNeighFailed fBool     `toml:"trust_neigh_failed"`
	Window           fDuration `toml:"window"`
	MinSamples       fCount    `toml:"min_samples"`
	LatencyThreshold fDuration `toml:"latency_threshold"`
	LossThreshold    fRatio    `toml:"loss_threshold"`
	Damping          fBool     `toml:"damping"`
	FlapPenalty      fFloat    `toml:"flap_penalty"`
	SuppressAbove    fFloat    `toml:"suppress_above"`
	ReuseBelow       fFloat    `toml:"reuse_below"`
	HalfLife         fDuration `toml:"half_life"`
	MaxSuppress      fDuration `toml:"max_suppress"`
}

type rawProbe struct {
	Gateway fBool   `toml:"gateway"`
	Neigh   fBool   `toml:"neigh"`
	ICMP    []fAddr `toml:"icmp"`
	TCP     []fWord `toml:"tcp"`
	MinUp   fCount  `toml:"min_up"`
	Pin     fPin    `toml:"pin"`
	Mark    fUint32 `toml:"mark"`
	// HTTP and DNS probes (probekinds.go).
	HTTP           []fWord     `toml:"http"`
	HTTPStatus     fHTTPStatus `toml:"http_status"`
	HTTPServerName fWord       `toml:"http_server_name"`
	HTTPCAFile     fWord       `toml:"http_ca_file"`
	DNS            []fWord     `toml:"dns"`
	DNSName        fWord       `toml:"dns_name"`
	DNSType        fWord       `toml:"dns_type"`
	DNSAnswer      fAddr       `toml:"dns_answer"`
}

type rawGateway struct {
	Address        fGwAddr    `toml:"address"`
	Family         fWord      `toml:"family"`
	Interface      fWord      `toml:"interface"`
	VRF            fWord      `toml:"vrf"`
	Optional       fBool      `toml:"optional"`
	Weight         fWeight    `toml:"weight"`
	Tier           fTier      `toml:"tier"`
	DegradedWeight fWeight    `toml:"degraded_weight"`
	DegradedTier   fTier      `toml:"degraded_tier"`
	Sources        []fAddr    `toml:"sources"`
	Table          fTable     `toml:"table"`
	OnDown         fOnDown    `toml:"on_down"`
	Metric         fUint32    `toml:"metric"`
	Profile        fWord      `toml:"profile"`
	Probe          rawProbe   `toml:"probe"`
	Detect         rawProfile `toml:"detect"`

	FlushConntrack fFlush  `toml:"flush_conntrack"`
	SNATAddresses  []fAddr `toml:"snat_addresses"`
	ConntrackMark  fMark   `toml:"conntrack_mark"`
	BFD            rawBFD  `toml:"bfd"`
}

type rawGroup struct {
	Gateways   []fWord     `toml:"gateways"`
	Table      fTable      `toml:"table"`
	Family     fWord       `toml:"family"`
	Metric     fUint32     `toml:"metric"`
	LastResort fLastResort `toml:"last_resort"`

	Buckets         fBuckets  `toml:"buckets"`
	IdleTimer       fDuration `toml:"idle_timer"`
	UnbalancedTimer fDuration `toml:"unbalanced_timer"`
	Condition       fWord     `toml:"condition"`
}

type rawRule struct {
	From     fPrefix `toml:"from"`
	To       fPrefix `toml:"to"`
	FwMark   fMark   `toml:"fwmark"`
	IIF      fWord   `toml:"iif"`
	Table    fTable  `toml:"table"`
	Gateway  fWord   `toml:"gateway"`
	Priority fUint32 `toml:"priority"`
	Family   fWord   `toml:"family"`
}

type rawAnnounce struct {
	Prefix fPrefix `toml:"prefix"`
	Track  fWord   `toml:"track"`
	Table  fTable  `toml:"table"`
	Type   fWord   `toml:"type"`
	Via    fAddr   `toml:"via"`
	Dev    fWord   `toml:"dev"`
	Metric fUint32 `toml:"metric"`
}

type rawHook struct {
	Command []string  `toml:"command"`
	Timeout fDuration `toml:"timeout"`
	Events  []fWord   `toml:"events"`
	Only    []fWord   `toml:"only"`
}

// validator collects errors with positions while building the Policy.
type validator struct {
	file string
	idx  keyIndex
	errs Errors
	opts Options
}

func (v *validator) addAt(path []string, object, format string, args ...any) {
	line, col := v.idx.lookup(path...)
	v.errs = append(v.errs, &Error{File: v.file, Line: line, Col: col, Object: object, Msg: fmt.Sprintf(format, args...)})
}

// check reports a field's deferred decode error, prefixed with its key
// unless the message already names it.
func check[T any, PT interface {
	*T
	interface{ UnmarshalText([]byte) error }
}](v *validator, f textField[T, PT], path []string, object string) bool {
	if f.Err == nil {
		return f.Set
	}
	key := path[len(path)-1]
	msg := f.Err.Error()
	if !strings.HasPrefix(msg, strings.ReplaceAll(key, "_", " ")+" ") && !strings.HasPrefix(msg, key+" ") {
		msg = key + ": " + msg
	}
	v.addAt(path, object, "%s", msg)
	return false
}

func objName(kind, name string) string { return fmt.Sprintf("%s %q", kind, name) }

func path(parts ...string) []string { return parts }

// Parse decodes, fills in defaults and validates a policy. file is used only
// in error messages. It returns every problem it finds as Errors.
func Parse(file string, data []byte, opts Options) (*Policy, error) {
	if len(data) > MaxPolicySize {
		return nil, Errors{{File: file, Msg: fmt.Sprintf("policy is %d bytes, more than the %d-byte limit", len(data), MaxPolicySize)}}
	}
	if i := bytes.IndexByte(data, 0); i >= 0 {
		line := bytes.Count(data[:i], []byte("\n")) + 1
		col := i - bytes.LastIndexByte(data[:i], '\n')
		return nil, Errors{{File: file, Line: line, Col: col, Msg: "policy contains a NUL byte (is this a binary file?)"}}
	}
	v := &validator{file: file, idx: indexKeys(data), opts: opts}
	var raw rawFile
	md, err := toml.Decode(string(data), &raw)
	if err != nil {
		return nil, Errors{decodeError(file, err)}
	}
	v.unknownKeys(md)
	p := v.build(&raw)
	v.managesSomething(p)
	if len(v.errs) > 0 {
		v.errs.sort()
		return nil, v.errs
	}
	p.File = file
	return p, nil
}

// ErrManagesNothing is the message for a policy under which uplinkd would
// install nothing: no group (a default route), no gateway table, no rule and
// no announce. Such a policy would make run and reload withdraw every route
// uplinkd owns, which is how an empty file, a comment-only file, a wrong
// path (/dev/null) or gateways left out of every group would take a host's
// default route away. Withdrawing everything on purpose is done with
// on_exit = "withdraw" and a stop. [kernel] settings do not count: they are
// sysctls, not routes or rules uplinkd owns.
const ErrManagesNothing = "policy manages nothing: it defines no group, gateway table, rule or announce, so uplinkd would install no route or rule, and applying it would withdraw every route uplinkd owns (to withdraw them on purpose, set on_exit = \"withdraw\" in [daemon] and stop uplinkd)"

// managesSomething refuses a policy that would install nothing. It is the
// one owner of this rule: check, run and reload all refuse through Parse.
// It is reported only when nothing else is wrong: a misspelt section
// ([gateways]) or an invalid group already says why nothing is managed.
func (v *validator) managesSomething(p *Policy) {
	if len(v.errs) > 0 || len(p.Groups) > 0 || len(p.Rules) > 0 || len(p.Announces) > 0 {
		return
	}
	var loose []string // gateways that lead to nothing: in no group, no table
	for _, g := range p.Gateways {
		if g.Table != 0 {
			return
		}
		loose = append(loose, strconv.Quote(g.Name))
	}
	msg := ErrManagesNothing
	if len(loose) > 0 {
		msg += fmt.Sprintf("; gateways in no group and without a table install nothing: %s", strings.Join(loose, ", "))
	}
	v.errs = append(v.errs, &Error{File: v.file, Msg: msg})
}

func decodeError(file string, err error) *Error {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		msg := pe.Message
		if pe.LastKey != "" && !strings.Contains(msg, pe.LastKey) {
			msg = fmt.Sprintf("%s (at key %q)", msg, pe.LastKey)
		}
		return &Error{File: file, Line: pe.Position.Line, Col: pe.Position.Col, Msg: "decoding TOML: " + msg}
	}
	return &Error{File: file, Msg: "decoding TOML: " + strings.TrimPrefix(err.Error(), "toml: ")}
}

var sections = []string{"daemon", "kernel", "profile", "gateway", "group", "rule", "announce", "hook", "condition"}

func (v *validator) unknownKeys(md toml.MetaData) {
	und := md.Undecoded()
	seen := map[string]bool{}
	for _, k := range und {
		if len(k) == 0 {
			continue
		}
		if !slices.Contains(sections, k[0]) {
			if !seen[k[:1].String()] {
				seen[k[:1].String()] = true
				hint := didYouMean(k[0], sections, func(s string) string { return "[" + s + "]" })
				v.addAt(k, "", "unknown section [%s] (sections are %s)%s", k[0], strings.Join(sections, ", "), hint)
			}
			continue
		}
		seen[k.String()] = true
	}
	for _, k := range und {
		if len(k) < 2 || seen[k[:1].String()] || seen[k[:len(k)-1].String()] {
			continue // report only the outermost unknown key
		}
		object := "[" + k[0] + "]"
		rest := k[1:]
		if k[0] != "daemon" && k[0] != "kernel" && len(k) >= 3 {
			object, rest = objName(k[0], k[1]), k[2:]
		}
		where := ""
		if len(rest) > 1 {
			where = " in " + strings.Join(rest[:len(rest)-1], ".")
		}
		line, col := v.idx.lookupKey(k...)
		last := rest[len(rest)-1]
		hint := didYouMean(last, knownKeys(k[:len(k)-1]), strconv.Quote)
		v.errs = append(v.errs, &Error{File: v.file, Line: line, Col: col, Object: object, Msg: fmt.Sprintf("unknown key %q%s%s", last, where, hint)})
	}
}

var builtinTables = map[string]uint32{"unspec": 0, "default": 253, "main": 254, "local": 255}

// table resolves a table reference. reserved lists the numbers not allowed
// for this use.
func (v *validator) table(f fTable, p []string, object string, reserved ...uint32) (uint32, bool) {
	if !check(v, f, p, object) {
		return 0, false
	}
	id := f.V.ID
	if f.V.Name != "" {
		var ok bool
		if id, ok = builtinTables[f.V.Name]; !ok {
			if id, ok = v.opts.TableNames[f.V.Name]; !ok {
				v.addAt(p, object, "table %q is not defined in rt_tables", f.V.Name)
				return 0, false
			}
		}
	}
	if slices.Contains(reserved, id) {
		v.addAt(p, object, "table %d is reserved (%s) and cannot be used here", id, TableName(id))
		return 0, false
	}
	return id, true
}

func (v *validator) enum(f fWord, p []string, object, def string, choices ...string) string {
	if !f.Set {
		return def
	}
	if !slices.Contains(choices, string(f.V)) {
		v.addAt(p, object, "%s %q is not one of %s", p[len(p)-1], f.V, strings.Join(choices, ", "))
		return def
	}
	return string(f.V)
}

var nameOK = func(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r == '-' || r == '_' || r == '.' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return false
		}
	}
	return true
}

func sortedKeys[M ~map[string]V, V any](m M) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func sortStrings(s []string) { slices.Sort(s) }

func (v *validator) build(raw *rawFile) *Policy {
	p := &Policy{Profiles: map[string]*Profile{}}
	v.daemon(&raw.Daemon, &p.Daemon)
	v.kernel(&raw.Kernel, &p.Kernel)

	def := DefaultProfile()
	p.Profiles["default"] = &def
	for _, name := range sortedKeys(raw.Profile) {
		if !nameOK(name) {
			v.addAt(path("profile", name), objName("profile", name), "name must be 1..64 letters, digits, '-', '_' or '.'")
		}
		base := DefaultProfile()
		base.Name = name
		rp := raw.Profile[name]
		prof := v.profile(&rp, base, []string{"profile", name}, objName("profile", name))
		p.Profiles[name] = &prof
	}

	names := map[string]string{}  // gateway and group names share one namespace: status --check NAME
	tables := map[uint32]string{} // table -> the object that owns it as a gateway table
	sources := map[netip.Addr]string{}
	for _, name := range sortedKeys(raw.Gateway) {
		rg := raw.Gateway[name]
		// Invalid gateways are kept so that references to them do not
		// cascade into "not defined" errors; the policy is refused anyway.
		p.Gateways = append(p.Gateways, v.gateway(name, &rg, p, tables, sources))
		names[name] = "gateway"
	}
	v.checkConntrackInterfaces(p.Gateways)
	p.byName = make(map[string]*Gateway, len(p.Gateways))
	for _, g := range p.Gateways {
		p.byName[g.Name] = g
	}
	for _, name := range sortedKeys(raw.Group) {
		rg := raw.Group[name]
		obj := objName("group", name)
		if kind, dup := names[name]; dup {
			v.addAt(path("group", name), obj, "name is already used by a %s", kind)
			continue
		}
		p.Groups = append(p.Groups, v.group(name, &rg, p, tables))
		names[name] = "group"
	}
	v.groupTables(p, raw)
	v.conditions(raw.Condition, p, names)
	v.groupConditions(raw, p)
	v.rules(raw, p, tables)
	for _, name := range sortedKeys(raw.Announce) {
		ra := raw.Announce[name]
		if a := v.announce(name, &ra, p, names); a != nil {
			p.Announces = append(p.Announces, a)
		}
	}
	for _, name := range sortedKeys(raw.Hook) {
		rh := raw.Hook[name]
		if h := v.hook(name, &rh, names); h != nil {
			p.Hooks = append(p.Hooks, h)
		}
	}
	return p
}

func (v *validator) daemon(r *rawDaemon, d *Daemon) {
	obj := "[daemon]"
	d.Listen = DefaultListen
	if check(v, r.Listen, path("daemon", "listen"), obj) {
		d.Listen = string(r.Listen.V)
		if d.Listen != "" {
			if _, port, err := net.SplitHostPort(d.Listen); err != nil {
				v.addAt(path("daemon", "listen"), obj, "listen %q is not host:port", d.Listen)
			} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
				v.addAt(path("daemon", "listen"), obj, "listen %q has no valid port", d.Listen)
			}
		}
	}
	d.RouteProtocol = DefaultRouteProtocol
	if check(v, r.RouteProtocol, path("daemon", "route_protocol"), obj) {
		d.RouteProtocol = uint8(r.RouteProtocol.V)
		if d.RouteProtocol <= 4 {
			v.addAt(path("daemon", "route_protocol"), obj, "route_protocol %d is reserved by the kernel (0..4: unspec, redirect, kernel, boot, static); pick an unused number such as %d", d.RouteProtocol, DefaultRouteProtocol)
		}
	}
	d.RulePriority = PriorityBand{DefaultRuleBandMin, DefaultRuleBandMax}
	if check(v, r.RulePriorities, path("daemon", "rule_priorities"), obj) {
		d.RulePriority = r.RulePriorities.V
	}
	d.LogFormat = v.enum(r.LogFormat, path("daemon", "log_format"), obj, "text", "text", "json")
	d.LogLevel = v.enum(r.LogLevel, path("daemon", "log_level"), obj, "info", "debug", "info", "warn", "error")
	d.OnExit = v.enum(r.OnExit, path("daemon", "on_exit"), obj, OnExitLeave, OnExitLeave, OnExitWithdraw)
	d.ControlSocket = DefaultControlSocket
	if r.ControlSocket.Set {
		d.ControlSocket = string(r.ControlSocket.V)
	}
	if r.TrackDir.Set {
		d.TrackDir = string(r.TrackDir.V)
		if d.TrackDir != "" && !strings.HasPrefix(d.TrackDir, "/") {
			v.addAt(path("daemon", "track_dir"), obj, "track_dir %q must be an absolute path", d.TrackDir)
		}
	}
	for _, h := range r.HTTPHosts {
		if !check(v, h, path("daemon", "http_hosts"), obj) {
			continue
		}
		name := strings.TrimSuffix(strings.ToLower(string(h.V)), ".")
		if name == "" || strings.ContainsAny(name, ":/ []") {
			v.addAt(path("daemon", "http_hosts"), obj, "http_hosts entry %q is not a host name (no port, no brackets)", string(h.V))
			continue
		}
		d.HTTPHosts = append(d.HTTPHosts, name)
	}
	if r.WebConfigFile.Set {
		d.WebConfigFile = string(r.WebConfigFile.V)
		if d.WebConfigFile != "" && !strings.HasPrefix(d.WebConfigFile, "/") {
			v.addAt(path("daemon", "web_config_file"), obj, "web_config_file %q must be an absolute path", d.WebConfigFile)
		}
	}
	d.Multipath = enumOr(v, r.Multipath, path("daemon", "multipath"), obj, MultipathAuto)
	d.ResyncEvery = DefaultResync
	if check(v, r.ResyncInterval, path("daemon", "resync_interval"), obj) {
		d.ResyncEvery = time.Duration(r.ResyncInterval.V)
		if d.ResyncEvery < 100*time.Millisecond {
			v.addAt(path("daemon", "resync_interval"), obj, "resync_interval %s is below the minimum of 100ms", d.ResyncEvery)
		}
	}
}

func (v *validator) kernel(r *rawKernel, k *Kernel) {
	obj := "[kernel]"
	if check(v, r.IgnoreRoutesWithLinkdown, path("kernel", "ignore_routes_with_linkdown"), obj) {
		b := bool(r.IgnoreRoutesWithLinkdown.V)
		k.IgnoreRoutesWithLinkdown = &b
	}
	if check(v, r.FibMultipathUseNeigh, path("kernel", "fib_multipath_use_neigh"), obj) {
		b := bool(r.FibMultipathUseNeigh.V)
		k.FibMultipathUseNeigh = &b
	}
	if r.FibMultipathHashPolicy.Set {
		s := v.enum(r.FibMultipathHashPolicy, path("kernel", "fib_multipath_hash_policy"), obj, "", "l3", "l4", "l3-inner")
		if s != "" {
			n := slices.Index([]string{"l3", "l4", "l3-inner"}, s)
			k.FibMultipathHashPolicy = &n
		}
	}
}

// enumOr is the value of a typed enum field, or def when it is unset or
// invalid (its error is reported).
func enumOr[E ~string, PE interface {
	*E
	encoding.TextUnmarshaler
}](v *validator, f textField[E, PE], p []string, obj string, def E) E {
	if check(v, f, p, obj) {
		return f.V
	}
	return def
}

func dur(v *validator, f fDuration, p []string, obj string, def time.Duration) time.Duration {
	if check(v, f, p, obj) {
		return time.Duration(f.V)
	}
	return def
}

// profile applies the fields set in r on top of base.
func (v *validator) profile(r *rawProfile, base Profile, prefix []string, obj string) Profile {
	k := func(key string) []string { return append(slices.Clone(prefix), key) }
	pr := base
	pr.Gating = enumOr(v, r.Gating, k("gating"), obj, base.Gating)
	pr.Interval = dur(v, r.Interval, k("interval"), obj, base.Interval)
	pr.FastInterval = dur(v, r.FastInterval, k("fast_interval"), obj, base.FastInterval)
	pr.Timeout = dur(v, r.Timeout, k("timeout"), obj, base.Timeout)
	pr.TxWithoutRx = dur(v, r.TxWithoutRx, k("tx_without_rx"), obj, base.TxWithoutRx)
	pr.ProbeHoldoff = dur(v, r.ProbeHoldoff, k("probe_holdoff"), obj, base.ProbeHoldoff)
	pr.ProbeHoldoffMax = dur(v, r.ProbeHoldoffMax, k("probe_holdoff_max"), obj, base.ProbeHoldoffMax)
	pr.SilenceFloor = dur(v, r.SilenceFloor, k("silence_floor"), obj, base.SilenceFloor)
	pr.TimeoutFloor = dur(v, r.TimeoutFloor, k("timeout_floor"), obj, base.TimeoutFloor)
	pr.QualityInterval = dur(v, r.QualityInterval, k("quality_interval"), obj, base.QualityInterval)
	pr.StandbyInterval = dur(v, r.StandbyInterval, k("standby_interval"), obj, base.StandbyInterval)
	pr.RecoveryInterval = dur(v, r.RecoveryInterval, k("recovery_interval"), obj, base.RecoveryInterval)
	pr.LinkHold = dur(v, r.LinkHold, k("link_hold"), obj, base.LinkHold)
	pr.Window = dur(v, r.Window, k("window"), obj, base.Window)
	pr.LatencyThreshold = dur(v, r.LatencyThreshold, k("latency_threshold"), obj, base.LatencyThreshold)
	pr.HalfLife = dur(v, r.HalfLife, k("half_life"), obj, base.HalfLife)
	pr.MaxSuppress = dur(v, r.MaxSuppress, k("max_suppress"), obj, base.MaxSuppress)
	if check(v, r.DownCount, k("down_count"), obj) {
		pr.DownCount = int(r.DownCount.V)
	}
	if check(v, r.UpCount, k("up_count"), obj) {
		pr.UpCount = int(r.UpCount.V)
	}
	if check(v, r.MinSamples, k("min_samples"), obj) {
		pr.MinSamples = int(r.MinSamples.V)
	}
	if check(v, r.TrustNeighFailed, k("trust_neigh_failed"), obj) {
		pr.TrustNeighFailed = bool(r.TrustNeighFailed.V)
	}
	if check(v, r.Damping, k("damping"), obj) {
		pr.Damping = bool(r.Damping.V)
	}
	if check(v, r.LossThreshold, k("loss_threshold"), obj) {
		pr.LossThreshold = float64(r.LossThreshold.V)
	}
	if check(v, r.FlapPenalty, k("flap_penalty"), obj) {
		pr.FlapPenalty = float64(r.FlapPenalty.V)
	}
	if check(v, r.SuppressAbove, k("suppress_above"), obj) {
		pr.SuppressAbove = float64(r.SuppressAbove.V)
	}
	if check(v, r.ReuseBelow, k("reuse_below"), obj) {
		pr.ReuseBelow = float64(r.ReuseBelow.V)
	}

	// Relations between fields; reported at the field the operator most
	// likely got wrong.
	for _, d := range []struct {
		key string
		val time.Duration
		set bool
	}{{"interval", pr.Interval, r.Interval.Set}, {"fast_interval", pr.FastInterval, r.FastInterval.Set}, {"timeout", pr.Timeout, r.Timeout.Set}, {"recovery_interval", pr.RecoveryInterval, r.RecoveryInterval.Set}, {"tx_without_rx", pr.TxWithoutRx, r.TxWithoutRx.Set}, {"silence_floor", pr.SilenceFloor, r.SilenceFloor.Set}, {"timeout_floor", pr.TimeoutFloor, r.TimeoutFloor.Set}} {
		if d.set && d.val < time.Millisecond {
			v.addAt(k(d.key), obj, "%s %s is below the minimum of 1ms", d.key, d.val)
		}
	}
	v.ceilings(r, &pr, k, obj)
	if pr.Damping && (r.Damping.Set || r.ReuseBelow.Set || r.SuppressAbove.Set || r.HalfLife.Set) {
		if pr.ReuseBelow >= pr.SuppressAbove {
			v.addAt(k("reuse_below"), obj, "reuse_below %g must be below suppress_above %g", pr.ReuseBelow, pr.SuppressAbove)
		}
		if pr.HalfLife <= 0 {
			v.addAt(k("half_life"), obj, "half_life must be positive while damping is on")
		}
	}
	return pr
}

func (v *validator) group(name string, r *rawGroup, p *Policy, tables map[uint32]string) *Group {
	obj := objName("group", name)
	at := func(keys ...string) []string { return append([]string{"group", name}, keys...) }
	if !nameOK(name) {
		v.addAt(at(), obj, "name must be 1..64 letters, digits, '-', '_' or '.'")
	}
	g := &Group{Name: name, Table: TableMain, LastResort: LastResortKeep,
		Buckets: DefaultBuckets, IdleTimer: DefaultIdleTimer, UnbalancedTimer: DefaultUnbalancedTimer}
	switch v.enum(r.Family, at("family"), obj, "", "ipv4", "ipv6") {
	case "ipv4":
		g.Family = 4
	case "ipv6":
		g.Family = 6
	}
	if len(r.Gateways) == 0 {
		v.addAt(at(), obj, "gateways must list at least one gateway")
	}
	for _, f := range r.Gateways {
		gn := string(f.V)
		gw := p.Gateway(gn)
		switch {
		case gw == nil && f.Err == nil:
			v.addAt(at("gateways"), obj, "gateway %q is not defined", gn)
		case slices.Contains(g.Gateways, gn):
			v.addAt(at("gateways"), obj, "gateway %q is listed twice", gn)
		case !gw.hasFamily():
			g.Gateways = append(g.Gateways, gn) // its own error is reported already
		case g.Family == 0:
			g.Family = gw.Family()
			g.Gateways = append(g.Gateways, gn)
		case gw.Family() != g.Family:
			v.addAt(at("gateways"), obj, "gateway %q is IPv%d but the group is IPv%d", gn, gw.Family(), g.Family)
		default:
			g.Gateways = append(g.Gateways, gn)
		}
	}
	if r.Table.Set {
		if id, ok := v.table(r.Table, at("table"), obj, TableUnspec, TableLocal); ok {
			if owner, dup := tables[id]; dup {
				v.addAt(at("table"), obj, "table %d is already the table of %s", id, owner)
			} else {
				g.Table = id
			}
		}
	}
	v.groupVRF(r, g, p, at, obj)
	if check(v, r.Metric, at("metric"), obj) {
		g.Metric = uint32(r.Metric.V)
	}
	g.LastResort = enumOr(v, r.LastResort, at("last_resort"), obj, LastResortKeep)
	if check(v, r.Buckets, at("buckets"), obj) {
		g.Buckets = int(r.Buckets.V)
	}
	for _, t := range []struct {
		f   fDuration
		key string
		dst *time.Duration
	}{{r.IdleTimer, "idle_timer", &g.IdleTimer}, {r.UnbalancedTimer, "unbalanced_timer", &g.UnbalancedTimer}} {
		if !check(v, t.f, at(t.key), obj) {
			continue
		}
		d := time.Duration(t.f.V)
		switch {
		case d%(10*time.Millisecond) != 0:
			v.addAt(at(t.key), obj, "%s %v is not a whole number of 10ms steps (the kernel keeps 1/100 s)", t.key, d)
		case d > MaxGroupTimer:
			v.addAt(at(t.key), obj, "%s %v is longer than %v", t.key, d, MaxGroupTimer)
		default:
			*t.dst = d
		}
	}
	if t := r.IdleTimer; t.Set && t.Err == nil && time.Duration(t.V) == 0 {
		v.addAt(at("idle_timer"), obj, "idle_timer 0 would move busy flows back at once; it must be at least 10ms")
	}
	return g
}

// groupTables rejects two groups that would fight over one default route.
func (v *validator) groupTables(p *Policy, raw *rawFile) {
	type key struct {
		table  uint32
		vrf    string // a VRF's groups share its table, unknown until run time
		family int
		metric uint32
	}
	seen := map[key]string{}
	for _, g := range p.Groups {
		k := key{g.Table, g.VRF, g.Family, g.Metric}
		if other, dup := seen[k]; dup {
			where := "table " + TableName(g.Table)
			if g.VRF != "" {
				where = vrfText(g.VRF) + "'s table"
			}
			v.addAt(path("group", g.Name, "table"), objName("group", g.Name), "the IPv%d default route of %s (metric %d) is already managed by group %q", g.Family, where, g.Metric, other)
			continue
		}
		seen[k] = g.Name
	}
}

func (v *validator) announce(name string, r *rawAnnounce, p *Policy, names map[string]string) *Announce {
	obj := objName("announce", name)
	at := func(keys ...string) []string { return append([]string{"announce", name}, keys...) }
	nerr := len(v.errs)
	a := &Announce{Name: name, Table: TableMain, Type: AnnounceUnicast}
	if !nameOK(name) {
		v.addAt(at(), obj, "name must be 1..64 letters, digits, '-', '_' or '.'")
	}
	if check(v, r.Prefix, at("prefix"), obj) {
		a.Prefix = r.Prefix.V.Prefix
	} else if !r.Prefix.Set {
		v.addAt(at(), obj, "prefix is required")
	}
	if !r.Track.Set {
		v.addAt(at(), obj, "track is required (a gateway, group or condition whose health the route follows)")
	} else if _, ok := names[string(r.Track.V)]; !ok {
		v.addAt(at("track"), obj, "track %q is not a gateway, group or condition", r.Track.V)
	} else {
		a.Track = string(r.Track.V)
	}
	if r.Table.Set {
		if id, ok := v.table(r.Table, at("table"), obj, TableUnspec, TableLocal); ok {
			a.Table = id
		}
	}
	a.Type = v.enum(r.Type, at("type"), obj, AnnounceUnicast, AnnounceUnicast, AnnounceBlackhole, AnnounceUnreachable)
	if check(v, r.Via, at("via"), obj) {
		a.Via = r.Via.V.Addr
		if a.Type != AnnounceUnicast {
			v.addAt(at("via"), obj, "via is only for type = \"unicast\"")
		}
		if a.Prefix.IsValid() && a.Via.Is4() != a.Prefix.Addr().Is4() {
			v.addAt(at("via"), obj, "via %s is not of the prefix's address family", a.Via)
		}
	}
	if r.Dev.Set {
		a.Dev = string(r.Dev.V)
	}
	if check(v, r.Metric, at("metric"), obj) {
		a.Metric = uint32(r.Metric.V)
	}
	if a.Track != "" && a.Prefix.IsValid() && a.Type == AnnounceUnicast && !a.Via.IsValid() && a.Dev == "" {
		fam := FamilyOf(a.Prefix.Addr())
		if gw := p.Gateway(a.Track); gw != nil && gw.hasFamily() && gw.Family() != fam {
			v.addAt(at("track"), obj, "tracked gateway %q is IPv%d but the prefix is IPv%d; set via or dev", gw.Name, gw.Family(), fam)
		}
		if g := p.Group(a.Track); g != nil && g.Family != fam {
			v.addAt(at("track"), obj, "tracked group %q is IPv%d but the prefix is IPv%d; set via or dev", g.Name, g.Family, fam)
		}
		if p.Condition(a.Track) != nil {
			v.addAt(at("track"), obj, "tracked condition %q has no nexthop of its own; set via or dev", a.Track)
		}
	}
	if len(v.errs) > nerr {
		return nil
	}
	return a
}

func (v *validator) hook(name string, r *rawHook, names map[string]string) *Hook {
	obj := objName("hook", name)
	at := func(keys ...string) []string { return append([]string{"hook", name}, keys...) }
	nerr := len(v.errs)
	h := &Hook{Name: name, Timeout: DefaultHookTimeout}
	if !nameOK(name) {
		v.addAt(at(), obj, "name must be 1..64 letters, digits, '-', '_' or '.'")
	}
	switch {
	case len(r.Command) == 0:
		v.addAt(at(), obj, "command is required (an argv list; no shell is used)")
	case !strings.HasPrefix(r.Command[0], "/"):
		v.addAt(at("command"), obj, "command %q must be an absolute path (hooks run as root and never search PATH)", r.Command[0])
	default:
		h.Command = slices.Clone(r.Command)
	}
	h.Timeout = dur(v, r.Timeout, at("timeout"), obj, DefaultHookTimeout)
	if h.Timeout <= 0 || h.Timeout > MaxHookTimeout {
		v.addAt(at("timeout"), obj, "timeout %s is out of range (0s, %s]", h.Timeout, MaxHookTimeout)
	}
	if len(r.Events) == 0 {
		v.addAt(at(), obj, "events must list at least one of %s", strings.Join(Events, ", "))
	}
	for _, e := range r.Events {
		if !slices.Contains(Events, string(e.V)) {
			v.addAt(at("events"), obj, "event %q is not one of %s", e.V, strings.Join(Events, ", "))
			continue
		}
		h.Events = append(h.Events, string(e.V))
	}
	for _, o := range r.Only {
		if _, ok := names[string(o.V)]; !ok {
			v.addAt(at("only"), obj, "%q is not a gateway, group or condition", o.V)
			continue
		}
		h.Objects = append(h.Objects, string(o.V))
	}
	if len(v.errs) > nerr {
		return nil
	}
	return h
}

// conntrack validates a gateway's conntrack flush settings. Entries are
// matched by exactly one selector, and the interface selector only where
// the interface is the gateway's alone (checked across gateways, see
// checkConntrackInterfaces).
func (v *validator) conntrack(r *rawGateway, g *Gateway, at func(...string) []string, obj string) Conntrack {
	c := Conntrack{Flush: FlushNever}
	if check(v, r.FlushConntrack, at("flush_conntrack"), obj) {
		c.Flush = r.FlushConntrack.V
	}
	for _, a := range r.SNATAddresses {
		if !check(v, a, at("snat_addresses"), obj) {
			continue
		}
		addr := a.V.Addr.WithZone("")
		if g.hasFamily() && addr.Is4() != (g.Family() == 4) {
			v.addAt(at("snat_addresses"), obj, "snat address %s is not of the gateway's address family", addr)
			continue
		}
		if !slices.Contains(c.SNAT, addr) {
			c.SNAT = append(c.SNAT, addr)
		}
	}
	if check(v, r.ConntrackMark, at("conntrack_mark"), obj) {
		c.Mark, c.Mask = r.ConntrackMark.V.Value, r.ConntrackMark.V.Mask
		if c.Mask == 0 {
			v.addAt(at("conntrack_mark"), obj, "conntrack_mark with mask 0 would match every entry")
		}
	}
	switch {
	case len(r.SNATAddresses) > 0 && r.ConntrackMark.Set:
		v.addAt(at("conntrack_mark"), obj, "set snat_addresses or conntrack_mark, not both: an entry is the gateway's by one selector")
	case c.Flush == FlushNever && (len(r.SNATAddresses) > 0 || r.ConntrackMark.Set):
		key := "snat_addresses"
		if r.ConntrackMark.Set {
			key = "conntrack_mark"
		}
		v.addAt(at(key), obj, "%s selects conntrack entries to flush, but flush_conntrack is \"never\"", key)
	}
	return c
}

// checkConntrackInterfaces refuses the interface selector on an interface
// that two gateways share: the addresses of the interface cannot tell
// their entries apart, and a flush for one would delete the other's.
func (v *validator) checkConntrackInterfaces(gws []*Gateway) {
	byIface := map[string][]string{}
	for _, g := range gws {
		byIface[g.Interface] = append(byIface[g.Interface], g.Name)
	}
	for _, g := range gws {
		if g.Conntrack.Flush == FlushNever || g.Conntrack.Match() != "interface" || len(byIface[g.Interface]) < 2 {
			continue
		}
		others := slices.DeleteFunc(slices.Clone(byIface[g.Interface]), func(n string) bool { return n == g.Name })
		v.addAt(path("gateway", g.Name, "flush_conntrack"), objName("gateway", g.Name),
			"flush_conntrack matches by interface address, but interface %s is also %s's; set snat_addresses or conntrack_mark", g.Interface, strings.Join(others, ", "))
	}
}

// ceilings checks the adaptive settings against their ceilings. A
// floor left at its default follows a lower ceiling (a profile that sets
// timeout = "10ms" means it); one set above its ceiling is an error.
func (v *validator) ceilings(r *rawProfile, pr *Profile, k func(string) []string, obj string) {
	for _, c := range []struct {
		lo, hi     string
		floor      *time.Duration
		ceil       time.Duration
		set, below bool
	}{
		{"silence_floor", "tx_without_rx", &pr.SilenceFloor, pr.TxWithoutRx, r.SilenceFloor.Set, false},
		{"timeout_floor", "timeout", &pr.TimeoutFloor, pr.Timeout, r.TimeoutFloor.Set, false},
		{"probe_holdoff_max", "probe_holdoff", &pr.ProbeHoldoffMax, pr.ProbeHoldoff, r.ProbeHoldoffMax.Set, true},
	} {
		wrong := *c.floor > c.ceil
		if c.below {
			wrong = *c.floor < c.ceil
		}
		switch {
		case !wrong:
		case !c.set:
			*c.floor = c.ceil
		case c.below:
			v.addAt(k(c.lo), obj, "%s %s is below %s %s", c.lo, *c.floor, c.hi, c.ceil)
		default:
			v.addAt(k(c.lo), obj, "%s %s is above %s %s", c.lo, *c.floor, c.hi, c.ceil)
		}
	}
}
