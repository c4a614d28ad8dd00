package main

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"time"
)

func load(args []string) error {
	fs := flag.NewFlagSet("load", flag.ExitOnError)
	addr := fs.String("addr", "", "server address")
	clients := fs.Int("clients", 10, "concurrent clients, each on its own user")
	duration := fs.Duration("duration", 20*time.Second, "how long to run")
	logout := fs.Bool("logout", true, "log in and out on every loop")
	corpus := fs.String("corpus", "", "corpus directory (messages to APPEND)")
	label := fs.String("label", "server", "label for the result line")
	verbose := fs.Bool("v", false, "print the mean latency of each command")
	cpuprofile := fs.String("cpuprofile", "", "write the load generator's own CPU profile here")
	fs.Parse(args)
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			return err
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	files, err := corpusFiles(*corpus, 100)
	if err != nil {
		return err
	}
	var msgs [][]byte
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		msgs = append(msgs, b)
	}
	var total, failures atomic.Int64
	var firstErr atomic.Value
	var stats *latencies
	if *verbose {
		stats = &latencies{sum: map[string]time.Duration{}, n: map[string]int{}}
	}
	deadline := time.Now().Add(*duration)
	start := time.Now()
	var wg sync.WaitGroup
	for i := 0; i < *clients; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			w := &worker{addr: *addr, user: userName(i + 1), msgs: msgs, rnd: rand.New(rand.NewPCG(uint64(i), 7)), logout: *logout, stats: stats}
			for time.Now().Before(deadline) {
				if err := w.loop(deadline, &total); err != nil {
					failures.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					w.reset()
					time.Sleep(10 * time.Millisecond)
				}
			}
			w.reset()
		}(i)
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	fmt.Printf("%s clients=%d logout=%v cmds=%d errors=%d secs=%.1f cmds_per_s=%.0f\n",
		*label, *clients, *logout, total.Load(), failures.Load(), secs, float64(total.Load())/secs)
	if stats != nil {
		stats.print(*label)
	}
	if e := firstErr.Load(); e != nil {
		fmt.Fprintf(os.Stderr, "%s: first error: %s\n", *label, e)
	}
	return nil
}

// worker is one client of the mix.
type worker struct {
	addr   string
	user   string
	msgs   [][]byte
	rnd    *rand.Rand
	logout bool
	c      *conn
	iter   int
	stats  *latencies
}

// latencies sums the time spent per command name.
type latencies struct {
	mu  sync.Mutex
	sum map[string]time.Duration
	n   map[string]int
}

func (l *latencies) add(name string, d time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sum[name] += d
	l.n[name]++
}

func (l *latencies) print(label string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Printf("%s mean latency:", label)
	for _, k := range []string{"LOGIN", "LIST", "SELECT", "FETCH", "STORE", "APPEND", "UID", "EXPUNGE", "LOGOUT"} {
		if l.n[k] > 0 {
			fmt.Printf(" %s=%.2fms", k, float64(l.sum[k].Microseconds())/1000/float64(l.n[k]))
		}
	}
	fmt.Println()
}

func (w *worker) reset() {
	if w.c != nil {
		w.c.close()
		w.c = nil
	}
}

// loop runs one round of the mix, counting completed commands.
func (w *worker) loop(deadline time.Time, total *atomic.Int64) error {
	step := func(err error) error {
		if err == nil {
			total.Add(1)
		}
		return err
	}
	if w.stats != nil {
		t0 := time.Now()
		inner := step
		step = func(err error) error {
			w.stats.add(w.c.lastName, time.Since(t0))
			t0 = time.Now()
			return inner(err)
		}
	}
	if w.c == nil {
		c, err := dial(w.addr)
		if err != nil {
			return err
		}
		w.c = c
		if err := step(c.cmd(`LOGIN %s %s`, w.user, password)); err != nil {
			return err
		}
	}
	c := w.c
	if err := step(c.cmd(`LIST "" "*"`)); err != nil {
		return err
	}
	if err := step(c.cmd(`SELECT INBOX`)); err != nil {
		return err
	}
	n := c.exists()
	if n < 10 {
		return fmt.Errorf("%s: INBOX has %d messages", w.user, n)
	}
	r := 1 + w.rnd.IntN(n-9)
	msg := w.msgs[w.iter%len(w.msgs)]
	w.iter++
	cmds := []func() error{
		func() error { return c.cmd(`FETCH 1:* (UID FLAGS)`) },
		func() error { return c.cmd(`FETCH %d:%d (ENVELOPE INTERNALDATE RFC822.SIZE)`, r, r+9) },
		func() error { return c.cmd(`FETCH %d BODY.PEEK[]`, r) },
		func() error { return c.cmd(`STORE %d +FLAGS (\Flagged)`, r) },
		func() error { return c.cmd(`STORE %d -FLAGS (\Flagged)`, r) },
		func() error { return c.cmdLiteral(msg, `APPEND INBOX (\Seen)`) },
	}
	for _, f := range cmds {
		if err := step(f()); err != nil {
			return err
		}
	}
	uid := c.appendUID()
	if uid == 0 {
		return fmt.Errorf("no APPENDUID")
	}
	if err := step(c.cmd(`UID STORE %d +FLAGS.SILENT (\Deleted)`, uid)); err != nil {
		return err
	}
	if err := step(c.cmd(`EXPUNGE`)); err != nil {
		return err
	}
	if w.logout || !time.Now().Before(deadline) {
		err := step(c.cmd(`LOGOUT`))
		w.reset()
		return err
	}
	return nil
}
