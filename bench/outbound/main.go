// Command outbound benchmarks tern's outbound queue against Postfix in
// the same run: N messages of 2 KiB relayed to Postfix's smtp-sink on
// loopback, timed from the first submission until the sink has counted
// them all. The runs share one sink:
//
//   - postfix: smtp-source -> a private Postfix instance (postfix -c DIR,
//     relayhost = the sink) -> smtp-sink; Postfix does not sign;
//   - postfix-dkim: the same with OpenDKIM as a milter signing every
//     message with the same two keys as tern (Ed25519 + RSA-2048, relaxed/
//     relaxed, the same header list): the like-for-like comparison. One
//     message is first routed to a capturing server and both signatures
//     verified, so the run cannot pass while OpenDKIM signs nothing;
//   - tern-smtp: smtp-source -> a go-smtp listener that writes the blob and
//     calls queue.Enqueue before its 250 (as the submission server does) ->
//     tern's queue (DKIM Ed25519 + RSA-2048 signing, MX lookup through an
//     in-process DNS server) -> smtp-sink;
//   - tern-api: N concurrent queue.Enqueue calls -> smtp-sink.
//
// Then the queue's memory is sampled while M messages wait for a
// destination that refuses connections.
//
//	go build -o /tmp/outbound ./bench/outbound && /tmp/outbound -n 20000 -hold 100000
//	/tmp/outbound -n 20000 -hold 0 -rounds 3     # medians of 3 rounds
//	/tmp/outbound -n 20000 -hold 0 -dkim=false   # neither side signs
//
// bench/outbound/run.sh builds it and runs it under the shared bench lock.
//
// It must run as root (Postfix's master needs it) on a machine with the
// Debian postfix, opendkim and opendkim-tools packages; it only uses
// 127.0.0.0/8.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/foxcpp/go-mockdns"

	"github.com/tern-mail/tern/internal/dkim"
	"github.com/tern-mail/tern/internal/dns"
	"github.com/tern-mail/tern/internal/queue"
	"github.com/tern-mail/tern/internal/store"
)

// exitHooks undo external state (a running Postfix) when interrupted.
type exitHooks struct {
	mu sync.Mutex
	fn []func()
}

func (h *exitHooks) add(f func()) { h.mu.Lock(); h.fn = append(h.fn, f); h.mu.Unlock() }
func (h *exitHooks) run() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, f := range h.fn {
		f()
	}
}

type opts struct {
	atExit                  *exitHooks
	n, hold, sessions, conc int
	sinkPort, pfPort        int
	ternPort                int
	capturePort             int
	skipPostfix             bool
	dkim                    bool
	runs                    string
	rounds                  int
}

func main() {
	o := opts{atExit: &exitHooks{}}
	flag.IntVar(&o.n, "n", 20000, "messages per run")
	flag.IntVar(&o.hold, "hold", 100000, "messages held for a down destination in the memory test (0 skips it)")
	flag.IntVar(&o.sessions, "s", 20, "concurrent submission sessions (smtp-source -s)")
	flag.IntVar(&o.conc, "c", 20, "connections per destination, for tern and Postfix alike")
	flag.IntVar(&o.sinkPort, "sink-port", 42525, "smtp-sink port on 127.0.0.5")
	flag.IntVar(&o.pfPort, "postfix-port", 42526, "Postfix smtpd port on 127.0.0.6")
	flag.IntVar(&o.ternPort, "tern-port", 42527, "tern's receiving port on 127.0.0.7")
	flag.IntVar(&o.capturePort, "capture-port", 42529, "port on 127.0.0.5 of the server capturing the signature check message")
	flag.BoolVar(&o.skipPostfix, "skip-postfix", false, "do not run Postfix")
	flag.BoolVar(&o.dkim, "dkim", true, "tern signs every message (Ed25519 + RSA-2048); the postfix run does not sign, postfix-dkim does")
	flag.StringVar(&o.runs, "runs", "postfix,postfix-dkim,tern-smtp,tern-api", "which throughput runs to do")
	flag.IntVar(&o.rounds, "rounds", 1, "rounds of the throughput runs; medians are printed")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the whole bench process (the tern runs)")
	flag.Parse()
	log.SetFlags(0)

	sink, err := startSink(o.sinkPort)
	if err != nil {
		log.Fatal(err)
	}
	defer sink.stop()
	// On ^C or a failure, stop the sink and any Postfix or OpenDKIM
	// before leaving: a sink left behind on the port would share the
	// next run's connections and its count.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sigs
		sink.stop()
		o.atExit.run()
		os.Exit(1)
	}()
	fatalf := func(format string, args ...any) {
		sink.stop()
		o.atExit.run()
		log.Fatalf(format, args...)
	}

	runs := map[string]bool{}
	for _, r := range strings.Split(o.runs, ",") {
		runs[strings.TrimSpace(r)] = true
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fatalf("%v", err)
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	// Each round runs every system once, so the ratios compare runs made
	// moments apart on the same (shared, noisy) machine; the summary
	// gives the medians of the rates and of the per-round ratios.
	rates := map[string][]float64{}
	ratios := map[string][]float64{}
	for round := 1; round <= o.rounds; round++ {
		if o.rounds > 1 {
			fmt.Printf("round %d of %d\n", round, o.rounds)
		}
		r, err := throughputRound(o, sink, runs)
		if err != nil {
			fatalf("%v", err)
		}
		for k, v := range r {
			rates[k] = append(rates[k], v)
		}
		for _, base := range []string{"postfix", "postfix-dkim"} {
			for _, t := range []string{"tern-smtp", "tern-api"} {
				if r[base] > 0 && r[t] > 0 {
					name := t + "/" + base
					ratios[name] = append(ratios[name], r[t]/r[base])
					fmt.Printf("ratio %-23s %.2fx\n", name, r[t]/r[base])
				}
			}
		}
	}
	if o.rounds > 1 {
		fmt.Printf("medians of %d rounds (n=%d, dkim=%v):\n", o.rounds, o.n, o.dkim)
		for _, k := range []string{"postfix", "postfix-dkim", "tern-smtp", "tern-api"} {
			if len(rates[k]) > 0 {
				fmt.Printf("  %-13s %6.0f msgs/s  %v\n", k, median(rates[k]), rounded(rates[k]))
			}
		}
		for _, k := range []string{"tern-smtp/postfix", "tern-api/postfix", "tern-smtp/postfix-dkim", "tern-api/postfix-dkim"} {
			if len(ratios[k]) > 0 {
				fmt.Printf("  %-23s %.2fx\n", k, median(ratios[k]))
			}
		}
	}
	if o.hold > 0 {
		if err := holdTest(o); err != nil {
			fatalf("hold: %v", err)
		}
	}
}

// throughputRound runs each selected system once and returns the rates.
func throughputRound(o opts, sink *sink, runs map[string]bool) (map[string]float64, error) {
	r := map[string]float64{}
	if !o.skipPostfix && runs["postfix"] {
		rate, err := runPostfix(o, sink, false)
		if err != nil {
			return nil, fmt.Errorf("postfix: %w", err)
		}
		r["postfix"] = rate
		fmt.Printf("postfix    %6d msgs in %7.2fs  %8.0f msgs/s  (unsigned)\n", o.n, float64(o.n)/rate, rate)
	}
	if !o.skipPostfix && runs["postfix-dkim"] && o.dkim {
		rate, err := runPostfix(o, sink, true)
		if err != nil {
			return nil, fmt.Errorf("postfix-dkim: %w", err)
		}
		r["postfix-dkim"] = rate
		fmt.Printf("postfix+od %6d msgs in %7.2fs  %8.0f msgs/s  (OpenDKIM: Ed25519 + RSA-2048)\n", o.n, float64(o.n)/rate, rate)
	}
	for _, t := range []struct {
		name    string
		viaSMTP bool
	}{{"tern-smtp", true}, {"tern-api", false}} {
		if !runs[t.name] {
			continue
		}
		rate, err := runTern(o, sink, t.viaSMTP)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", t.name, err)
		}
		r[t.name] = rate
		fmt.Printf("%-10s %6d msgs in %7.2fs  %8.0f msgs/s  (dkim=%v)\n", t.name, o.n, float64(o.n)/rate, rate, o.dkim)
	}
	return r, nil
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func rounded(v []float64) []int {
	var out []int
	for _, x := range v {
		out = append(out, int(x+0.5))
	}
	return out
}

// sink runs smtp-sink with its running counter and parses "mesg=N".
type sink struct {
	cmd   *exec.Cmd
	count atomic.Int64
}

func startSink(port int) (*sink, error) {
	s := &sink{}
	s.cmd = exec.Command(sbin("smtp-sink"), "-c", "-u", "nobody", fmt.Sprintf("127.0.0.5:%d", port), "1000")
	out, err := s.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		sc := bufio.NewScanner(out)
		sc.Split(func(data []byte, atEOF bool) (int, []byte, error) {
			for i, b := range data {
				if b == '\r' || b == '\n' {
					return i + 1, data[:i], nil
				}
			}
			if atEOF && len(data) > 0 {
				return len(data), data, nil
			}
			return 0, nil, nil
		})
		for sc.Scan() {
			if i := strings.Index(sc.Text(), "mesg="); i >= 0 {
				if n, err := strconv.ParseInt(sc.Text()[i+5:], 10, 64); err == nil {
					s.count.Store(n)
				}
			}
		}
	}()
	return s, waitPort(fmt.Sprintf("127.0.0.5:%d", port))
}

func (s *sink) stop() { s.cmd.Process.Kill(); s.cmd.Wait() }

// waitCount waits until the sink counted target messages.
func (s *sink) waitCount(target int64, timeout time.Duration) error {
	end := time.Now().Add(timeout)
	for s.count.Load() < target {
		if time.Now().After(end) {
			return fmt.Errorf("sink has %d of %d messages after %v", s.count.Load(), target, timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return nil
}

func sbin(name string) string {
	for _, d := range []string{"/usr/sbin", "/usr/bin", "/sbin"} {
		if p := filepath.Join(d, name); fileExists(p) {
			return p
		}
	}
	return name
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

func waitPort(addr string) error {
	for i := 0; i < 200; i++ {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(25 * time.Millisecond)
	}
	return fmt.Errorf("nothing listening on %s", addr)
}

// smtpSource runs smtp-source against addr and returns when it is done.
func smtpSource(o opts, addr string) error {
	cmd := exec.Command(sbin("smtp-source"), "-s", strconv.Itoa(o.sessions), "-m", strconv.Itoa(o.n), "-l", "2048",
		"-f", "bench@src.test", "-t", "rcpt@sink.test", addr)
	cmd.Stderr = os.Stderr
	return cmd.Run()
}

func runPostfix(o opts, s *sink, sign bool) (float64, error) {
	dir, err := os.MkdirTemp("", "outbound-postfix-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	var milter string
	var keys *dkim.Keys
	if sign {
		var stop func()
		var milters []string
		if keys, milters, stop, err = startOpenDKIM(o, dir); err != nil {
			return 0, err
		}
		o.atExit.add(stop)
		defer stop()
		// The milters sign what arrives over SMTP (all the bench sends).
		milter = fmt.Sprintf("smtpd_milters = %s\nmilter_default_action = tempfail\nmilter_protocol = 6\n", strings.Join(milters, ", "))
	}
	conf := filepath.Join(dir, "conf")
	for _, d := range []string{conf, filepath.Join(dir, "spool"), filepath.Join(dir, "data")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return 0, err
		}
	}
	os.Chmod(dir, 0o755)
	if out, err := exec.Command("chown", "postfix", filepath.Join(dir, "data")).CombinedOutput(); err != nil {
		return 0, fmt.Errorf("chown: %v %s", err, out)
	}
	mainCF := fmt.Sprintf(`compatibility_level = 3.6
queue_directory = %[1]s/spool
data_directory = %[1]s/data
command_directory = /usr/sbin
daemon_directory = /usr/lib/postfix/sbin
meta_directory = /etc/postfix
shlib_directory = /usr/lib/postfix
mail_owner = postfix
setgid_group = postdrop
myhostname = bench.postfix.test
mydestination =
inet_interfaces = all
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relayhost = [127.0.0.5]:%[2]d
smtp_tls_security_level = none
smtpd_tls_security_level = none
smtp_dns_support_level = disabled
maillog_file_prefixes = /tmp, /var
maillog_file = %[1]s/maillog
alias_maps =
alias_database =
local_recipient_maps =
smtpd_relay_restrictions = permit_mynetworks, reject
default_destination_concurrency_limit = %[3]d
default_process_limit = 100
biff = no
transport_maps = inline:{ {check.test = smtp:[127.0.0.5]:%[4]d} }
%[5]s`, dir, o.sinkPort, o.conc, o.capturePort, milter)
	masterCF := fmt.Sprintf("127.0.0.6:%d inet n - n - - smtpd\n", o.pfPort) + `pickup unix n - n 60 1 pickup
cleanup unix n - n - 0 cleanup
qmgr unix n - n 300 1 qmgr
rewrite unix - - n - - trivial-rewrite
bounce unix - - n - 0 bounce
defer unix - - n - 0 bounce
trace unix - - n - 0 bounce
verify unix - - n - 1 verify
flush unix n - n 1000? 0 flush
proxymap unix - - n - - proxymap
proxywrite unix - - n - 1 proxymap
smtp unix - - n - - smtp
relay unix - - n - - smtp
showq unix n - n - - showq
error unix - - n - - error
retry unix - - n - - error
discard unix - - n - - discard
anvil unix - - n - 1 anvil
scache unix - - n - 1 scache
postlog unix-dgram n - n - 1 postlogd
`
	if err := os.WriteFile(filepath.Join(conf, "main.cf"), []byte(mainCF), 0o644); err != nil {
		return 0, err
	}
	if err := os.WriteFile(filepath.Join(conf, "master.cf"), []byte(masterCF), 0o644); err != nil {
		return 0, err
	}
	if out, err := exec.Command(sbin("postfix"), "-c", conf, "start").CombinedOutput(); err != nil {
		return 0, fmt.Errorf("postfix start: %v %s", err, out)
	}
	stop := func() { exec.Command(sbin("postfix"), "-c", conf, "stop").Run() }
	o.atExit.add(stop)
	defer stop()
	if err := waitPort(fmt.Sprintf("127.0.0.6:%d", o.pfPort)); err != nil {
		return 0, err
	}
	if sign {
		if err := checkSigned(o, keys); err != nil {
			return 0, fmt.Errorf("signature check: %w", err)
		}
	}
	base := s.count.Load()
	start := time.Now()
	if err := smtpSource(o, fmt.Sprintf("127.0.0.6:%d", o.pfPort)); err != nil {
		return 0, err
	}
	if err := s.waitCount(base+int64(o.n), 15*time.Minute); err != nil {
		return 0, err
	}
	return float64(o.n) / time.Since(start).Seconds(), nil
}

// ternEnv is a tern data directory with its queue running.
type ternEnv struct {
	st   *store.Store
	q    *queue.Queue
	dns  *mockdns.Server
	stop func()
	dir  string
}

func newTern(o opts, sinkIP string, port int) (*ternEnv, error) {
	dir, err := os.MkdirTemp("", "outbound-tern-")
	if err != nil {
		return nil, err
	}
	ctx := context.Background()
	st, err := store.Open(ctx, dir, store.Options{})
	if err != nil {
		return nil, err
	}
	keys := dkim.New(dir)
	if err := keys.Ensure("src.test"); err != nil {
		return nil, err
	}
	zones := map[string]mockdns.Zone{
		"sink.test.":    {MX: []net.MX{{Host: "mx.sink.test.", Pref: 10}}},
		"mx.sink.test.": {A: []string{sinkIP}},
	}
	srv, err := mockdns.NewServerWithLogger(zones, log.New(io.Discard, "", 0), false)
	if err != nil {
		return nil, err
	}
	res, _ := dns.NewResolver(srv.LocalAddr().String())
	var signer queue.Signer = keys
	if !o.dkim {
		signer = nil
	}
	q := queue.New(queue.Config{
		Store: st, Resolver: res, DKIM: signer, Hostname: "bench.tern.test", Port: port,
		PerDestination: o.conc, Dialer: &net.Dialer{Timeout: 5 * time.Second},
		RetryBase: time.Minute, DownTTL: 30 * time.Second,
	})
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { q.Run(rctx); close(done) }()
	return &ternEnv{st: st, q: q, dns: srv, dir: dir, stop: func() {
		cancel()
		<-done
		st.Close()
		srv.Close()
		os.RemoveAll(dir)
	}}, nil
}

// enqueue writes one message durably and queues it, as the submission
// server does before its 250.
func (t *ternEnv) enqueue(ctx context.Context, r io.Reader, from string, rcpts []string) error {
	w, err := t.st.NewBlob()
	if err != nil {
		return err
	}
	if _, err := io.Copy(w, r); err != nil {
		w.Abort()
		return err
	}
	b, err := w.Commit()
	if err != nil {
		return err
	}
	m := &queue.Message{From: from, Blob: b}
	for _, rc := range rcpts {
		m.Recipients = append(m.Recipients, queue.Recipient{Address: rc})
	}
	_, err = t.q.Enqueue(ctx, m)
	t.st.DiscardBlob(ctx, b.ID)
	return err
}

func message(i int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "From: <bench@src.test>\r\nTo: <rcpt@sink.test>\r\nSubject: bench %d\r\nDate: Sun, 22 Nov 2026 10:00:00 +0000\r\nMessage-ID: <%d@src.test>\r\n\r\n", i, i)
	for b.Len() < 2048 {
		b.WriteString("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789\r\n")
	}
	return b.String()
}

func runTern(o opts, s *sink, viaSMTP bool) (float64, error) {
	t, err := newTern(o, "127.0.0.5", o.sinkPort)
	if err != nil {
		return 0, err
	}
	defer t.stop()
	ctx := context.Background()
	base := s.count.Load()
	var start time.Time
	if viaSMTP {
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.7:%d", o.ternPort))
		if err != nil {
			return 0, err
		}
		srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &session{t: t}, nil }))
		srv.Domain = "bench.tern.test"
		srv.ErrorLog = log.New(io.Discard, "", 0)
		go srv.Serve(l)
		defer srv.Close()
		start = time.Now()
		if err := smtpSource(o, l.Addr().String()); err != nil {
			return 0, err
		}
	} else {
		start = time.Now()
		var next atomic.Int64
		var wg sync.WaitGroup
		var firstErr atomic.Value
		for range o.sessions {
			wg.Go(func() {
				for i := int(next.Add(1)); i <= o.n; i = int(next.Add(1)) {
					if err := t.enqueue(ctx, strings.NewReader(message(i)), "bench@src.test", []string{"rcpt@sink.test"}); err != nil {
						firstErr.CompareAndSwap(nil, err)
						return
					}
				}
			})
		}
		wg.Wait()
		if err, _ := firstErr.Load().(error); err != nil {
			return 0, err
		}
	}
	fmt.Printf("  (all %d accepted after %.2fs, sink at %d)\n", o.n, time.Since(start).Seconds(), s.count.Load()-base)
	if err := s.waitCount(base+int64(o.n), 15*time.Minute); err != nil {
		return 0, err
	}
	return float64(o.n) / time.Since(start).Seconds(), nil
}

// session is the bench's receiving side: blob, Enqueue, then 250.
type session struct {
	t     *ternEnv
	from  string
	rcpts []string
}

func (s *session) Reset()        { s.from, s.rcpts = "", nil }
func (s *session) Logout() error { return nil }
func (s *session) Mail(from string, _ *smtp.MailOptions) error {
	s.from = from
	return nil
}
func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.rcpts = append(s.rcpts, to)
	return nil
}
func (s *session) Data(r io.Reader) error {
	return s.t.enqueue(context.Background(), r, s.from, s.rcpts)
}

// holdTest queues o.hold messages for a destination that refuses
// connections and samples the heap as the queue grows.
func holdTest(o opts) error {
	t, err := newTern(o, "127.0.0.9", 9)
	if err != nil {
		return err
	}
	defer t.stop()
	ctx := context.Background()
	fmt.Printf("hold: %d messages for a down destination (127.0.0.9:9)\n", o.hold)
	msg := message(0)
	var next atomic.Int64
	var done atomic.Int64
	var wg sync.WaitGroup
	var firstErr atomic.Value
	for range o.sessions {
		wg.Go(func() {
			for i := next.Add(1); i <= int64(o.hold); i = next.Add(1) {
				if err := t.enqueue(ctx, strings.NewReader(msg), "bench@src.test", []string{"rcpt@sink.test"}); err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				done.Add(1)
			}
		})
	}
	start := time.Now()
	sample := func(label string) {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		n, _ := t.st.QueueCount(ctx)
		fmt.Printf("  %-10s queued=%6d heap_inuse=%6.1f MiB  sys=%6.1f MiB  rss=%6.1f MiB  goroutines=%d  (%.0fs)\n",
			label, n, float64(ms.HeapInuse)/(1<<20), float64(ms.Sys)/(1<<20), rssMiB(), runtime.NumGoroutine(), time.Since(start).Seconds())
	}
	marks := []int64{int64(o.hold) / 10, int64(o.hold) / 4, int64(o.hold) / 2, int64(o.hold)}
	for _, m := range marks {
		for done.Load() < m {
			if err, _ := firstErr.Load().(error); err != nil {
				return err
			}
			time.Sleep(50 * time.Millisecond)
		}
		sample(fmt.Sprintf("at %d", m))
	}
	wg.Wait()
	// Let the first attempts of the tail run and fail.
	time.Sleep(5 * time.Second)
	sample("settled")
	return nil
}

// rssMiB reads the resident set size from /proc (Linux).
func rssMiB() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			f := strings.Fields(line)
			if len(f) >= 2 {
				kb, _ := strconv.ParseFloat(f[1], 64)
				return kb / 1024
			}
		}
	}
	return 0
}
