// Command pop3bench measures POP3 download speed: tern's pop3server
// against Dovecot's pop3 on the same maildrop (see run.sh).
//
//	pop3bench prepare -corpus DIR -data D -maildir M -users 10 -n 5000
//	pop3bench serve -data D -addr 127.0.0.1:PORT
//	pop3bench fetch -addr 127.0.0.1:PORT -users 10 [-user user%d@bench.test]
//
// prepare fills a tern data directory (one blob per message, delivered to
// every user's INBOX) and, for Dovecot, one Maildir per user with the same
// bytes. fetch logs in with USER/PASS as each user concurrently, runs
// UIDL, LIST, then RETR of every message one at a time (no pipelining, as
// fetchmail and getmail do), and QUIT without deleting; it prints
// messages/s.
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tern-mail/tern/internal/account"
	"github.com/tern-mail/tern/internal/message"
	"github.com/tern-mail/tern/internal/pop3server"
	"github.com/tern-mail/tern/internal/store"
	"github.com/tern-mail/tern/internal/testutil"
)

const password = "bench-password"

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: pop3bench prepare|serve|fetch|floor [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "prepare":
		err = prepare(os.Args[2:])
	case "serve":
		err = serve(os.Args[2:])
	case "fetch":
		err = fetch(os.Args[2:])
	case "floor":
		err = floor(os.Args[2:])
	default:
		err = fmt.Errorf("unknown subcommand %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "pop3bench:", err)
		os.Exit(1)
	}
}

func userName(i int) string { return fmt.Sprintf("user%d@bench.test", i) }

// corpusFiles lists the corpus .txt files in a stable order.
func corpusFiles(dir string, n int) ([]string, error) {
	files, err := testutil.ListCorpus(dir)
	if err != nil {
		return nil, err
	}
	if len(files) < n {
		return nil, fmt.Errorf("corpus has %d messages, want %d", len(files), n)
	}
	return files[:n], nil
}

func prepare(args []string) error {
	fs := flag.NewFlagSet("prepare", flag.ExitOnError)
	corpus := fs.String("corpus", "", "corpus data directory")
	data := fs.String("data", "", "tern data directory to create")
	maildir := fs.String("maildir", "", "directory for Dovecot's per-user Maildirs")
	users := fs.Int("users", 10, "users")
	n := fs.Int("n", 5000, "messages per user")
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
		if err := os.MkdirAll(filepath.Join(*maildir, userName(i), "Maildir", "cur"), 0o755); err != nil {
			return err
		}
		for _, d := range []string{"new", "tmp"} {
			os.MkdirAll(filepath.Join(*maildir, userName(i), "Maildir", d), 0o755)
		}
	}
	// Deliver concurrently so that the store's group commit batches them.
	work := make(chan int)
	errc := make(chan error, 8)
	var wg sync.WaitGroup
	base := time.Now().Add(-time.Duration(len(files)) * time.Minute)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				if err := deliverOne(ctx, st, files[i], targets, base.Add(time.Duration(i)*time.Minute), *maildir, *users, i); err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	for i := range files {
		select {
		case work <- i:
		case err := <-errc:
			close(work)
			return err
		}
	}
	close(work)
	wg.Wait()
	select {
	case err := <-errc:
		return err
	default:
	}
	fmt.Printf("prepared %d users x %d messages\n", *users, len(files))
	return nil
}

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
	// Dovecot: the same bytes in each user's Maildir/cur, hard-linked.
	// The S= size lets Dovecot skip a stat, as its own deliveries do.
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
	seen := fs.Bool("seen", true, "mark retrieved messages \\Seen")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile here until stopped")
	fs.Parse(args)
	if *cpuprofile != "" {
		stop, err := profileCPU(*cpuprofile)
		if err != nil {
			return err
		}
		defer stop()
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
	srv := pop3server.New(pop3server.Config{
		Store: st, Accounts: account.New(st), Hostname: "bench.test",
		Logger:       slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		InsecureAuth: true, MarkSeenOnRetr: *seen, MaxConnsPerIP: 1000,
	})
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sig
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}()
	fmt.Println("listening on", l.Addr())
	if err := srv.Serve(l); !errors.Is(err, pop3server.ErrServerClosed) {
		return err
	}
	return nil
}

// profileCPU writes a CPU profile to path until the returned stop runs.
// SIGUSR1 moves what was profiled so far to path.before and starts
// afresh, so that a warm-up run can be left out.
func profileCPU(path string) (stop func(), err error) {
	start := func() error {
		f, err := os.Create(path)
		if err != nil {
			return err
		}
		return pprof.StartCPUProfile(f)
	}
	if err := start(); err != nil {
		return nil, err
	}
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	var mu sync.Mutex
	go func() {
		for range usr1 {
			mu.Lock()
			pprof.StopCPUProfile()
			os.Rename(path, path+".before")
			if err := start(); err != nil {
				fmt.Fprintln(os.Stderr, "pop3bench: restarting profile:", err)
			}
			mu.Unlock()
		}
	}()
	return func() {
		signal.Stop(usr1)
		mu.Lock()
		pprof.StopCPUProfile()
		mu.Unlock()
	}, nil
}

// result of one user's download.
type result struct {
	msgs  int
	bytes int64
	err   error
}

func fetch(args []string) error {
	fs := flag.NewFlagSet("fetch", flag.ExitOnError)
	addr := fs.String("addr", "", "server address")
	users := fs.Int("users", 1, "concurrent users (user1..userN)")
	label := fs.String("label", "", "label for the output line")
	window := fs.Int("window", 1, "RETR commands in flight (>1 pipelines, RFC 2449 PIPELINING)")
	fs.Parse(args)
	cpu0 := processCPU()
	start := time.Now()
	results := make([]result, *users)
	var wg sync.WaitGroup
	for i := 0; i < *users; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = download(*addr, userName(i+1), *window)
		}()
	}
	wg.Wait()
	el := time.Since(start)
	var msgs int
	var bytes int64
	for i, r := range results {
		if r.err != nil {
			return fmt.Errorf("%s: %w", userName(i+1), r.err)
		}
		msgs += r.msgs
		bytes += r.bytes
	}
	// The client's own CPU during the download (not its start, which
	// initializes the store's SQLite code): it shares the machine with the
	// server, so a client slower per message would flatten the ratio.
	clientCPU := processCPU() - cpu0
	fmt.Printf("%s window=%d users=%d messages=%d bytes=%d seconds=%.3f msgs_per_s=%.1f client_cpu_s=%.2f\n",
		*label, *window, *users, msgs, bytes, el.Seconds(), float64(msgs)/el.Seconds(), clientCPU.Seconds())
	return nil
}

// processCPU is the CPU time this process has used so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// download fetches every message of one maildrop, one RETR at a time.
func download(addr, user string, window int) result {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return result{err: err}
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Minute))
	r := bufio.NewReaderSize(c, 64<<10)
	w := bufio.NewWriter(c)
	cmd := func(line string) (string, error) {
		if line != "" {
			w.WriteString(line + "\r\n")
		}
		if err := w.Flush(); err != nil {
			return "", err
		}
		l, err := r.ReadString('\n')
		if err != nil {
			return "", err
		}
		if !strings.HasPrefix(l, "+OK") {
			return "", fmt.Errorf("%q: %q", line, l)
		}
		return l, nil
	}
	// multi reads a multi-line body; it returns the line count and bytes.
	multi := func() (int, int64, error) {
		var n int
		var size int64
		for {
			l, err := r.ReadSlice('\n')
			if err == bufio.ErrBufferFull {
				size += int64(len(l))
				continue
			}
			if err != nil {
				return 0, 0, err
			}
			if len(l) == 3 && l[0] == '.' && l[1] == '\r' {
				return n, size, nil
			}
			n++
			size += int64(len(l))
		}
	}
	for _, l := range []string{"", "USER " + user, "PASS " + password} {
		if _, err := cmd(l); err != nil {
			return result{err: err}
		}
	}
	if _, err := cmd("UIDL"); err != nil {
		return result{err: err}
	}
	if _, _, err := multi(); err != nil {
		return result{err: err}
	}
	if _, err := cmd("LIST"); err != nil {
		return result{err: err}
	}
	count, _, err := multi()
	if err != nil {
		return result{err: err}
	}
	// body reads a RETR body up to its terminating line by searching the
	// buffered bytes for CRLF "." CRLF, rather than line by line: the
	// client's CPU is shared with the server on this machine, and a
	// cheaper client lets the figures measure the server.
	term := []byte("\r\n.\r\n")
	body := func() (int64, error) {
		var size int64
		prev := []byte("\r\n") // the status line ended a line
		var joined []byte
		for {
			if _, err := r.Peek(1); err != nil {
				return 0, err
			}
			chunk, _ := r.Peek(r.Buffered())
			// A terminator may straddle the previous chunk.
			joined = append(append(joined[:0], prev...), chunk[:min(len(chunk), len(term)-1)]...)
			if i := bytes.Index(joined, term); i >= 0 {
				n := i + len(term) - len(prev)
				r.Discard(n)
				return size + int64(n), nil
			}
			if i := bytes.Index(chunk, term); i >= 0 {
				r.Discard(i + len(term))
				return size + int64(i+len(term)), nil
			}
			if tail := len(term) - 1; len(chunk) >= tail {
				prev = append(prev[:0], chunk[len(chunk)-tail:]...)
			} else {
				joined = append(append(joined[:0], prev...), chunk...)
				prev = append(prev[:0], joined[max(0, len(joined)-tail):]...)
			}
			r.Discard(len(chunk))
			size += int64(len(chunk))
		}
	}
	var res result
	sent := 0
	// send tops the window up once half of it is answered, so a
	// pipelining client writes one batch of commands per half window
	// instead of one command per message.
	send := func() {
		if sent-res.msgs > window/2 {
			return
		}
		for sent < count && sent-res.msgs < window {
			sent++
			w.WriteString("RETR " + strconv.Itoa(sent) + "\r\n")
		}
	}
	for res.msgs < count {
		send()
		if _, err := cmd(""); err != nil {
			return result{err: err}
		}
		size, err := body()
		if err != nil {
			return result{err: err}
		}
		res.msgs++
		res.bytes += size
	}
	if _, err := cmd("QUIT"); err != nil && !errors.Is(err, io.EOF) {
		return result{err: err}
	}
	return res
}
