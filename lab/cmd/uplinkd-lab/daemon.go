package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/uplinkd/uplinkd/lab/netlab"
)

// daemon is uplinkd running in the lab's host namespace.
type daemon struct {
	h       *netlab.Host
	p       *netlab.Proc
	listen  string
	client  *http.Client
	started time.Time
}

func (d *daemon) startedAt() time.Time { return d.started }

// startDaemon runs `uplinkd run --config cfg` inside h and waits until it
// serves /status.
func startDaemon(ctx context.Context, h *netlab.Host, bin, cfg, listen string) (*daemon, error) {
	p, err := h.Start(bin, "run", "--config", cfg)
	if err != nil {
		return nil, err
	}
	d := &daemon{h: h, p: p, listen: listen, started: time.Now()}
	d.client = &http.Client{
		Timeout: 2 * time.Second,
		Transport: &http.Transport{
			// The listener is on the host namespace's own loopback: the
			// socket must be born in that namespace.
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				var c net.Conn
				err := h.Do(func() (err error) {
					var dl net.Dialer
					c, err = dl.DialContext(ctx, network, addr)
					return err
				})
				return c, err
			},
			DisableKeepAlives: true,
		},
	}
	ok := poll(ctx, 15*time.Second, func() bool {
		select {
		case <-p.Done():
			return true
		default:
		}
		_, err := d.get("/status")
		return err == nil
	})
	select {
	case <-p.Done():
		return nil, fmt.Errorf("uplinkd exited at start-up (%v):\n%s", p.Err(), netlab.Tail(p.Output(), 4000))
	default:
	}
	if !ok {
		_ = p.Stop()
		return nil, fmt.Errorf("uplinkd did not serve /status on %s within 15s:\n%s", listen, netlab.Tail(p.Output(), 4000))
	}
	return d, nil
}

func (d *daemon) get(path string) ([]byte, error) {
	resp, err := d.client.Get("http://" + d.listen + path)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return b, nil
}

// stop asks uplinkd to exit (SIGTERM) and kills it if it does not.
func (d *daemon) stop() error { return d.p.Terminate(5 * time.Second) }

// gwStatus is the part of /status the lab shows.
type gwStatus struct {
	Name            string  `json:"name"`
	Interface       string  `json:"interface"`
	State           string  `json:"state"`
	Health          string  `json:"health"`
	Reason          string  `json:"reason"`
	ProbesPerSecond float64 `json:"probes_per_second"`
	FlapPenalty     float64 `json:"flap_penalty"`
	Damped          bool    `json:"damped"`
}

type status struct {
	Multipath string     `json:"multipath"`
	Gateways  []gwStatus `json:"gateways"`
	Routes    []string   `json:"routes"`
}

func (d *daemon) status() (*status, error) {
	b, err := d.get("/status")
	if err != nil {
		return nil, err
	}
	var s status
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("decoding /status: %w", err)
	}
	return &s, nil
}

// sample is one Prometheus series value.
type sample struct {
	name   string
	labels map[string]string
	value  float64
}

type samples []sample

// sum adds up the series of name whose label k is v ("" k: all).
func (ss samples) sum(name, k, v string) float64 {
	t := 0.0
	for _, s := range ss {
		if s.name == name && (k == "" || s.labels[k] == v) {
			t += s.value
		}
	}
	return t
}

func (d *daemon) metrics() (samples, error) {
	b, err := d.get("/metrics")
	if err != nil {
		return nil, err
	}
	return parseMetrics(string(b)), nil
}

// parseMetrics reads the Prometheus text format, enough for counters and
// gauges with simple label values.
func parseMetrics(text string) samples {
	var out samples
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		s := sample{labels: map[string]string{}}
		rest := line
		if i := strings.IndexByte(line, '{'); i >= 0 {
			j := strings.LastIndexByte(line, '}')
			if j < i {
				continue
			}
			s.name = line[:i]
			for _, kv := range splitLabels(line[i+1 : j]) {
				k, v, ok := strings.Cut(kv, "=")
				if ok {
					s.labels[k] = strings.Trim(v, `"`)
				}
			}
			rest = strings.TrimSpace(line[j+1:])
		} else {
			f := strings.Fields(line)
			if len(f) < 2 {
				continue
			}
			s.name, rest = f[0], f[1]
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			continue
		}
		s.value = v
		out = append(out, s)
	}
	return out
}

func splitLabels(s string) []string {
	var out []string
	inQ := false
	start := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			inQ = !inQ
		case ',':
			if !inQ {
				out = append(out, s[start:i])
				start = i + 1
			}
		}
	}
	if start < len(s) {
		out = append(out, s[start:])
	}
	return out
}

// logLine is one JSON log record of uplinkd.
type logLine struct {
	Time  time.Time
	Level string
	Msg   string
	Attrs map[string]any
}

// logs parses the JSON records uplinkd has written to stderr so far.
func (d *daemon) logs() []logLine {
	var out []logLine
	for _, line := range strings.Split(d.p.Output(), "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "{") {
			continue
		}
		m := map[string]any{}
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			continue
		}
		l := logLine{Attrs: m}
		if s, ok := m["time"].(string); ok {
			l.Time, _ = time.Parse(time.RFC3339Nano, s)
		}
		l.Level, _ = m["level"].(string)
		l.Msg, _ = m["msg"].(string)
		delete(m, "time")
		delete(m, "level")
		delete(m, "msg")
		out = append(out, l)
	}
	return out
}

// attr returns a log attribute as text.
func (l logLine) attr(k string) string {
	v, ok := l.Attrs[k]
	if !ok {
		return ""
	}
	if s, ok := v.(string); ok {
		return s
	}
	return fmt.Sprint(v)
}

// text renders a record for the timeline: the message and its most
// telling attributes.
func (l logLine) text() string {
	var sb strings.Builder
	sb.WriteString(l.Msg)
	keys := []string{"gateway", "iface", "from", "to", "cause", "carrier", "line", "reason"}
	for _, k := range keys {
		if v := l.attr(k); v != "" {
			if k == "reason" {
				fmt.Fprintf(&sb, ": %q", v)
				continue
			}
			fmt.Fprintf(&sb, " %s=%s", k, v)
		}
	}
	return sb.String()
}
