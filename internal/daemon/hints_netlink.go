package daemon

import (
	"context"
	"fmt"
)

// subscribeHints runs one netlink subscription as hints (events are
// hints: the caller re-reads the state). subscribe opens it on ch,
// closed by closing done, and reports socket errors to onErr. hint is
// called once when the subscription is up (changes before it are read
// then) and after every update that relevant accepts. It returns nil
// when ctx ends, and an error when the subscription fails or closes:
// keepWatching resubscribes.
func subscribeHints[U any](ctx context.Context, what string, subscribe func(ch chan U, done chan struct{}, onErr func(error)) error,
	relevant func(U) bool, hint func()) error {
	ch := make(chan U, 256)
	done := make(chan struct{})
	errc := make(chan error, 1)
	onErr := func(err error) {
		select {
		case errc <- err:
		default:
		}
	}
	if err := subscribe(ch, done, onErr); err != nil {
		return fmt.Errorf("subscribing to %s updates: %w", what, err)
	}
	defer func() {
		close(done)
		for range ch {
		}
	}()
	hint()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-errc:
			return err
		case u, ok := <-ch:
			if !ok {
				return fmt.Errorf("%s subscription closed", what)
			}
			if relevant(u) {
				hint()
			}
		}
	}
}
