package nlsub

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestKeepRetriesAFailedSubscribe: a subscribe that fails never
// closes its channel, so the helper must not wait for it to drain; it
// retries, and once subscribed hands the live channel to serve.
func TestKeepRetriesAFailedSubscribe(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	attempts := 0
	subscribe := func(ch chan<- int, done <-chan struct{}, onErr func(error)) error {
		attempts++
		if attempts <= 2 {
			return errors.New("EPERM")
		}
		go func() {
			ch <- 42
			<-done
			close(ch)
		}()
		return nil
	}
	var got []string
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		Keep(ctx, 1, subscribe, func(ch <-chan int, errc <-chan error, err error) {
			if err != nil {
				got = append(got, "error")
				return
			}
			got = append(got, "serving")
			if v := <-ch; v != 42 {
				t.Errorf("served %d, want 42", v)
			}
			cancel()
		})
	}()
	select {
	case <-finished:
	case <-time.After(10 * time.Second):
		t.Fatal("Keep did not return: it waited on a channel a failed subscribe never closes")
	}
	if diff := cmp.Diff([]string{"error", "error", "serving"}, got); diff != "" {
		t.Errorf("serve calls (-want +got):\n%s", diff)
	}
}
