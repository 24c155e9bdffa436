package l2count

import "time"

// RunProgram runs the counter's program of direction d over frame n
// times with BPF_PROG_TEST_RUN (on the namespace's loopback, which the
// kernel gives every test run): the program's own cost per frame, without
// the hook or the rest of the data path.
func RunProgram(c *BPFCounter, d Dir, frame []byte, n int) (time.Duration, error) {
	var per time.Duration
	err := c.inNS(func() error {
		_, total, err := c.progs[d].Benchmark(frame, n, nil)
		per = total
		return err
	})
	return per, err
}
