package condwatch

import (
	"context"
	"log/slog"
	"maps"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/uplinkd/uplinkd/internal/condition"
	"github.com/uplinkd/uplinkd/internal/nlsub"
)

// DefaultResync is how often everything is re-read when no Resync is set.
const DefaultResync = 10 * time.Second

// Config configures a Watcher.
type Config struct {
	Kernel Kernel       // nil: Netlink
	Logger *slog.Logger // nil: discard
	Resync time.Duration
}

// Facts is what the watcher publishes: the non-health part of
// condition.Facts.
type Facts struct {
	Links map[string]bool
	Addrs map[condition.Addr]bool
	Files map[string]bool
}

func (f Facts) equal(g Facts) bool {
	return maps.Equal(f.Links, g.Links) && maps.Equal(f.Addrs, g.Addrs) && maps.Equal(f.Files, g.Files)
}

// Watcher re-reads links, addresses and track files when notified and on
// a timer, and signals Changed when what it read differs from before.
type Watcher struct {
	k      Kernel
	log    *slog.Logger
	resync time.Duration

	changed chan struct{} // capacity 1: a pending signal is as good as many
	wantc   chan struct{} // capacity 1: Set was called

	mu     sync.Mutex // guards what Set writes and Facts reads; never held across a channel operation
	ifaces []string
	files  []string
	facts  Facts

	live liveness
}

// Progress is the watcher's liveness: Busy while it re-reads (a netlink
// call or a file read that never returns shows as a stall), LastProgress
// when it last started or finished one.
type Progress struct {
	LastProgress time.Time
	Busy         bool
}

type liveness struct {
	mu sync.Mutex
	p  Progress
}

func (l *liveness) set(busy bool) {
	l.mu.Lock()
	l.p = Progress{LastProgress: time.Now(), Busy: busy}
	l.mu.Unlock()
}

// Liveness reports the watcher's progress; safe from any goroutine.
func (w *Watcher) Liveness() Progress {
	w.live.mu.Lock()
	defer w.live.mu.Unlock()
	return w.live.p
}

// New returns a watcher of nothing; Set says what to watch.
func New(cfg Config) *Watcher {
	w := &Watcher{k: cfg.Kernel, log: cfg.Logger, resync: cfg.Resync,
		changed: make(chan struct{}, 1), wantc: make(chan struct{}, 1)}
	if w.k == nil {
		w.k = Netlink{}
	}
	if w.log == nil {
		w.log = slog.New(slog.DiscardHandler)
	}
	if w.resync <= 0 {
		w.resync = DefaultResync
	}
	return w
}

// Set says which interfaces and track files to watch (condition.Watched of
// the running policy). Safe from any goroutine; Run re-reads at once.
func (w *Watcher) Set(ifaces, files []string) {
	w.mu.Lock()
	w.ifaces, w.files = slices.Clone(ifaces), slices.Clone(files)
	w.mu.Unlock()
	hint(w.wantc)
}

// Changed receives a value when Facts may differ from the last read.
func (w *Watcher) Changed() <-chan struct{} { return w.changed }

// Facts returns the last state read. The maps are the caller's.
func (w *Watcher) Facts() Facts {
	w.mu.Lock()
	defer w.mu.Unlock()
	return Facts{Links: maps.Clone(w.facts.Links), Addrs: maps.Clone(w.facts.Addrs), Files: maps.Clone(w.facts.Files)}
}

func (w *Watcher) wanted() (ifaces, files []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.ifaces, w.files
}

// Run watches until ctx ends.
func (w *Watcher) Run(ctx context.Context) error {
	ino, err := newInotify()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	defer ino.close() // unblocks the reader; runs before wg.Wait

	nlHints := make(chan struct{}, 1)
	wg.Add(1)
	go func() { defer wg.Done(); w.subscribe(ctx, nlHints) }()
	fileEvents := make(chan []event, 16)
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 64<<10)
		for {
			evs, err := ino.read(buf)
			if err != nil {
				return // closed
			}
			select {
			case fileEvents <- evs:
			case <-ctx.Done():
				return
			}
		}
	}()

	t := time.NewTicker(w.resync)
	defer t.Stop()
	cur := Facts{Links: map[string]bool{}, Addrs: map[condition.Addr]bool{}, Files: map[string]bool{}}
	readLinks := func() {
		ifaces, _ := w.wanted()
		links, addrs, err := w.k.Read(ifaces)
		if err != nil {
			// Keep what was read: a failed read says nothing about a link.
			w.log.Warn("reading links and addresses for conditions", "err", err)
		}
		cur.Links, cur.Addrs = links, addrs
	}
	readFiles := func(only map[string]bool) {
		_, files := w.wanted()
		next := maps.Clone(cur.Files)
		for k := range next {
			if !slices.Contains(files, k) {
				delete(next, k)
			}
		}
		for _, f := range files {
			if only == nil || only[f] {
				next[f] = ReadTrack(f)
			}
		}
		cur.Files = next
	}
	all := func() {
		_, files := w.wanted()
		if err := ino.watch(files); err != nil {
			w.log.Warn("watching track files", "err", err)
		}
		readLinks()
		readFiles(nil)
	}
	w.live.set(true)
	all()
	w.publish(cur)
	for {
		w.live.set(false)
		select {
		case <-ctx.Done():
			return nil
		case <-w.wantc:
			w.live.set(true)
			all()
		case <-t.C:
			w.live.set(true)
			all()
		case <-nlHints:
			w.live.set(true)
			readLinks()
		case evs := <-fileEvents:
			w.live.set(true)
			_, files := w.wanted()
			only := map[string]bool{}
			for _, e := range evs {
				if e.all {
					ino.forget(e.wd)
					only = nil
					break
				}
				if dir, ok := ino.wds[e.wd]; ok && slices.Contains(files, filepath.Join(dir, e.name)) {
					only[filepath.Join(dir, e.name)] = true
				}
			}
			if only == nil {
				all()
			} else if len(only) > 0 {
				readFiles(only)
			}
		}
		w.publish(cur)
	}
}

// publish stores f and signals Changed if it differs from what was
// published before.
func (w *Watcher) publish(f Facts) {
	w.mu.Lock()
	same := w.facts.equal(f) && w.facts.Links != nil
	if !same {
		w.facts = Facts{Links: maps.Clone(f.Links), Addrs: maps.Clone(f.Addrs), Files: maps.Clone(f.Files)}
	}
	w.mu.Unlock()
	if !same {
		hint(w.changed)
	}
}

// subscribe keeps a netlink subscription until ctx ends, forwarding its
// hints; after every (re)subscription, ENOBUFS included, it asks for a
// full re-read, since anything may have changed unseen.
func (w *Watcher) subscribe(ctx context.Context, out chan<- struct{}) {
	nlsub.Keep(ctx, 1, w.k.Subscribe, func(ch <-chan struct{}, errc <-chan error, err error) {
		if err != nil {
			w.log.Warn("subscribing to link and address updates", "err", err)
			return
		}
		hint(out)
		w.forward(ctx, ch, errc, out)
	})
}

func (w *Watcher) forward(ctx context.Context, ch <-chan struct{}, errc <-chan error, out chan<- struct{}) {
	for {
		select {
		case <-ctx.Done():
			return
		case err := <-errc:
			w.log.Warn("link and address subscription failed, resubscribing", "err", err)
			return
		case _, ok := <-ch:
			if !ok {
				return
			}
			hint(out)
		}
	}
}
