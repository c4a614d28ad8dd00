// Command imapbench measures IMAP servers: tern's imapserver against
// Dovecot with the same mix on the same messages (see run.sh).
//
//	imapbench prepare -corpus DIR -data D -maildir M -users 50 -n 200
//	imapbench serve -data D -addr 127.0.0.1:PORT
//	imapbench load -addr 127.0.0.1:PORT -clients 10 -duration 20s [-logout=false]
//	imapbench idle -addr 127.0.0.1:PORT -conns 10000 -users 100 -pid PID
//	imapbench bigprepare -data D -n 1000000
//	imapbench bigquery -addr 127.0.0.1:PORT -pid PID
//
// prepare fills a tern data directory and one Maildir per user for Dovecot
// with the first n corpus messages. load runs, on each client's own user,
// the loop: LOGIN, LIST, SELECT, FETCH 1:* (UID FLAGS), FETCH of ten
// envelopes, FETCH of one full body, STORE +FLAGS, STORE -FLAGS, APPEND,
// STORE +FLAGS \Deleted on the appended message, EXPUNGE, LOGOUT; it
// prints commands/s. With -logout=false each client logs in once and
// repeats the rest. idle opens many IDLE sessions and reports the server's
// RSS per connection and the push latency of a new message. bigprepare
// imports n generated messages into one INBOX (as tern import does) and
// bigquery times SELECT, UID FETCH 1:* (FLAGS) and header searches on it.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"runtime/metrics"
	"runtime/pprof"
	"runtime/trace"
	"sync"
	"syscall"
	"time"

	"github.com/tern-mail/tern/internal/account"
	"github.com/tern-mail/tern/internal/imapserver"
	"github.com/tern-mail/tern/internal/message"
	"github.com/tern-mail/tern/internal/store"
	"github.com/tern-mail/tern/internal/testutil"
)

const password = "bench-password"

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: imapbench prepare|serve|load|idle|bigprepare|bigquery [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "prepare":
		err = prepare(os.Args[2:])
	case "serve":
		err = serve(os.Args[2:])
	case "load":
		err = load(os.Args[2:])
	case "idle":
		err = idle(os.Args[2:])
	case "bigprepare":
		err = bigPrepare(os.Args[2:])
	case "bigquery":
		err = bigQuery(os.Args[2:])
	default:
		err = fmt.Errorf("unknown subcommand %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "imapbench:", err)
		os.Exit(1)
	}
}

func userName(i int) string { return fmt.Sprintf("user%d@bench.test", i) }

func corpusFiles(dir string, n int) ([]string, error) {
	files, err := testutil.ListCorpus(dir)
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no corpus messages under %s", dir)
	}
	if n > 0 && n < len(files) {
		files = files[:n]
	}
	return files, nil
}

func prepare(args []string) error {
	fs := flag.NewFlagSet("prepare", flag.ExitOnError)
	corpus := fs.String("corpus", "", "corpus data directory")
	data := fs.String("data", "", "tern data directory to create")
	maildir := fs.String("maildir", "", "directory for Dovecot's per-user Maildirs ('' = none)")
	users := fs.Int("users", 50, "users")
	n := fs.Int("n", 200, "messages per user")
	fs.Parse(args)
	files, err := corpusFiles(*corpus, *n)
	if err != nil {
		return err
	}
	ctx := context.Background()
	st, err := store.Open(ctx, *data, store.Options{})
	if err != nil {
		return err
	}
	defer st.Close()
	if err := st.AddDomain(ctx, "bench.test"); err != nil && !errors.Is(err, store.ErrExists) {
		return err
	}
	svc := account.New(st)
	var targets []store.Target
	for i := 1; i <= *users; i++ {
		a, err := svc.Add(ctx, userName(i), password)
		if err != nil {
			return err
		}
		targets = append(targets, store.Target{AccountID: a.ID})
		if *maildir != "" {
			for _, d := range []string{"cur", "new", "tmp"} {
				if err := os.MkdirAll(filepath.Join(*maildir, userName(i), "Maildir", d), 0o755); err != nil {
					return err
				}
			}
		}
	}
	work := make(chan int)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	base := time.Now().Add(-time.Duration(len(files)) * time.Minute)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				if err := deliverOne(ctx, st, files[i], targets, base.Add(time.Duration(i)*time.Minute), *maildir, *users, i); err != nil {
					mu.Lock()
					firstErr = err
					mu.Unlock()
				}
			}
		}()
	}
	for i := range files {
		work <- i
	}
	close(work)
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	fmt.Printf("prepared %d users x %d messages\n", *users, len(files))
	return nil
}

// deliverOne stores one corpus message for every user: one blob in tern,
// hard links of one file in the users' Maildirs for Dovecot.
func deliverOne(ctx context.Context, st *store.Store, file string, targets []store.Target, date time.Time, maildir string, users, i int) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	p, err := message.Parse(bytes.NewReader(b))
	if err != nil {
		return err
	}
	w, err := st.NewBlob()
	if err != nil {
		return err
	}
	w.Write(b)
	blob, err := w.Commit()
	if err != nil {
		return err
	}
	res, err := st.Deliver(ctx, &store.Delivery{Blob: blob, Parsed: p, InternalDate: date, Targets: targets, IgnoreQuota: true})
	if err != nil {
		return err
	}
	for _, r := range res {
		if r.Err != nil {
			return r.Err
		}
	}
	if maildir == "" {
		return nil
	}
	name := fmt.Sprintf("%d.M%dP1.bench,S=%d:2,", date.Unix(), i, len(b))
	first := filepath.Join(maildir, userName(1), "Maildir", "cur", name)
	if err := os.WriteFile(first, b, 0o644); err != nil {
		return err
	}
	os.Chtimes(first, date, date)
	for u := 2; u <= users; u++ {
		if err := os.Link(first, filepath.Join(maildir, userName(u), "Maildir", "cur", name)); err != nil {
			return err
		}
	}
	return nil
}

func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	data := fs.String("data", "", "tern data directory")
	addr := fs.String("addr", "127.0.0.1:0", "listen address")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile here until stopped")
	traceFile := fs.String("trace", "", "write an execution trace here: 2s, from 6s after start")
	fs.Parse(args)
	if *traceFile != "" {
		go func() {
			time.Sleep(6 * time.Second)
			f, err := os.Create(*traceFile)
			if err != nil {
				return
			}
			trace.Start(f)
			time.Sleep(2 * time.Second)
			trace.Stop()
			f.Close()
		}()
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			return err
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	ctx := context.Background()
	st, err := store.Open(ctx, *data, store.Options{})
	if err != nil {
		return err
	}
	defer st.Close()
	l, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	srv := imapserver.New(imapserver.Config{
		Store: st, Accounts: account.New(st), Hostname: "bench.test", InsecureAuth: true,
		Logger:        slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		MaxConnsPerIP: 20000, MaxConnsPerUser: 1000,
	})
	// SIGUSR1 returns freed memory to the OS, so that RSS measures what
	// is live (the idle benchmark sends it before reading RSS).
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	go func() {
		for range usr1 {
			debug.FreeOSMemory()
		}
	}()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sig
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}()
	fmt.Println("listening on", l.Addr())
	if err := srv.Serve(l); !errors.Is(err, imapserver.ErrServerClosed) {
		return err
	}
	if b, w, busy := st.WriterStats(); b > 0 {
		fmt.Printf("store writer: %d writes in %d batches (%.2f per batch), %v per batch\n",
			w, b, float64(w)/float64(b), (busy / time.Duration(b)).Round(time.Microsecond))
	}
	printSchedLatency()
	return nil
}

// printSchedLatency prints how long runnable goroutines waited for a CPU:
// a store writer that waits holds up every writing session.
func printSchedLatency() {
	sample := []metrics.Sample{{Name: "/sched/latencies:seconds"}}
	metrics.Read(sample)
	if sample[0].Value.Kind() != metrics.KindFloat64Histogram {
		return
	}
	h := sample[0].Value.Float64Histogram()
	var total uint64
	for _, c := range h.Counts {
		total += c
	}
	if total == 0 {
		return
	}
	quantile := func(q float64) time.Duration {
		var n uint64
		for i, c := range h.Counts {
			n += c
			if float64(n) >= q*float64(total) {
				return time.Duration(h.Buckets[i+1] * float64(time.Second))
			}
		}
		return 0
	}
	fmt.Printf("scheduling latency: p50 %v p90 %v p99 %v\n", quantile(0.5), quantile(0.9), quantile(0.99))
}
