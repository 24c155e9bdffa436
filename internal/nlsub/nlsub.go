package nlsub

import (
	"context"
	"time"
)

// RetryDelay bounds how fast a failing subscription is retried.
const RetryDelay = 200 * time.Millisecond

// Keep owns one netlink subscription's lifecycle until ctx ends:
// subscribe, hand the channels to serve (err is the subscribe error, if
// any), and when serve returns (the subscription failed, ENOBUFS included)
// close it, drain it and try again after RetryDelay. The detector's link
// and neighbour watchers and condwatch's link and address watcher differ
// only in what serve does.
func Keep[U any](ctx context.Context, buf int,
	subscribe func(ch chan<- U, done <-chan struct{}, onErr func(error)) error,
	serve func(ch <-chan U, errc <-chan error, err error)) {
	for {
		ch := make(chan U, buf)
		done := make(chan struct{})
		errc := make(chan error, 1)
		err := subscribe(ch, done, func(err error) {
			select {
			case errc <- err:
			default:
			}
		})
		serve(ch, errc, err)
		close(done)
		if err == nil {
			for range ch { // the subscription closes ch once done is seen
			}
		}
		if ctx.Err() != nil {
			return
		}
		t := time.NewTimer(RetryDelay)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}
