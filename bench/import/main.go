// Command import measures tern's mail import: it imports the spam-assassin
// corpus (6,046 messages) and a generated mbox of -n messages of about
// 2 KiB into fresh data directories, and prints messages per second and
// the peak resident memory of the importing process. The peer is Dovecot's
// doveadm import of the same mbox files into Maildir, on a private Dovecot
// instance without listeners.
//
// Each import runs in a child process (this binary with -child), so that
// its peak RSS (rusage maxrss, the kernel's VmHWM) is its own.
//
//	go run ./bench/import -n 1000000
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/tern-mail/tern/internal/mbox"
	"github.com/tern-mail/tern/internal/store"
	"github.com/tern-mail/tern/internal/transfer"
)

func main() {
	child := flag.Bool("child", false, "internal: import -src into -data and print stats")
	data := flag.String("data", "", "internal: data directory of the child")
	src := flag.String("src", "", "internal: what the child imports")
	n := flag.Int("n", 1_000_000, "messages in the generated mbox (0: skip)")
	size := flag.Int("size", 2048, "approximate size of a generated message")
	corpus := flag.String("corpus", defaultCorpus(), "corpus data directory (\"\": skip)")
	keep := flag.Bool("keep", false, "keep the temporary directory")
	withTern := flag.Bool("tern", true, "measure tern")
	withDovecot := flag.Bool("dovecot", true, "measure Dovecot's doveadm import as the peer (if installed)")
	cpuprofile := flag.String("cpuprofile", "", "internal: the child writes a CPU profile here")
	exports := flag.String("export", "mbox", "after each tern import, also measure export to these formats (comma-separated: mbox,maildir)")
	exportTo := flag.String("export-to", "", "internal: the child exports -data to this path, in format -src")
	flag.Parse()
	if *child {
		if *cpuprofile != "" {
			f, err := os.Create(*cpuprofile)
			if err != nil {
				fatal(err)
			}
			pprof.StartCPUProfile(f)
		}
		var err error
		if *exportTo != "" {
			err = runExportChild(*data, *src, *exportTo)
		} else {
			err = runChild(*data, *src)
		}
		if *cpuprofile != "" {
			pprof.StopCPUProfile()
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(1)
		}
		return
	}
	tmp, err := os.MkdirTemp("", "tern-bench-import-")
	if err != nil {
		fatal(err)
	}
	if !*keep {
		defer os.RemoveAll(tmp)
	}
	fmt.Printf("tern import benchmark (temp dir %s)\n", tmp)
	type dataset struct {
		name, path string
		count      int
	}
	var sets []dataset
	if *corpus != "" {
		if _, err := os.Stat(*corpus); err != nil {
			fmt.Printf("corpus: skipped (%v)\n", err)
		} else {
			path := filepath.Join(tmp, "corpus.mbox")
			count, err := corpusMbox(*corpus, path)
			if err != nil {
				fatal(err)
			}
			sets = append(sets, dataset{"corpus mbox", path, count})
		}
	}
	if *n > 0 {
		path := filepath.Join(tmp, "generated.mbox")
		t0 := time.Now()
		if err := generate(path, *n, *size); err != nil {
			fatal(err)
		}
		st, _ := os.Stat(path)
		fmt.Printf("generated %d messages, %.1f MiB, in %s\n", *n, float64(st.Size())/(1<<20), time.Since(t0).Round(time.Millisecond))
		sets = append(sets, dataset{"generated mbox", path, *n})
	}
	var dc *dovecot
	if *withDovecot {
		if dc, err = startDovecot(filepath.Join(tmp, "dovecot")); err != nil {
			fmt.Printf("dovecot: skipped (%v)\n", err)
		} else {
			defer dc.stop()
		}
	}
	for i, ds := range sets {
		var ternRate float64
		if *withTern {
			data := filepath.Join(tmp, fmt.Sprintf("data-%d", i))
			ternRate = measure(ds.name, ds.path, data, ds.count)
			for _, format := range strings.FieldsFunc(*exports, func(r rune) bool { return r == ',' }) {
				out := filepath.Join(tmp, fmt.Sprintf("export-%d-%s", i, format))
				measureExport(ds.name, data, format, out)
				os.RemoveAll(out)
			}
		}
		if dc == nil {
			continue
		}
		wall, rss, err := dc.importMbox(ds.path)
		if err != nil {
			fmt.Printf("dovecot %s: %v\n", ds.name, err)
			continue
		}
		got := dc.countMaildir()
		rate := float64(got) / wall.Seconds()
		fmt.Printf("%-15s %7d msgs dovecot doveadm import (mbox -> Maildir) in %7.1fs: %7.0f msgs/s; peak RSS %6.1f MiB\n",
			ds.name, got, wall.Seconds(), rate, float64(rss)/1024)
		if ternRate > 0 {
			fmt.Printf("%-15s ratio tern/dovecot: %.2f\n", ds.name, ternRate/rate)
		}
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "bench:", err)
	os.Exit(1)
}

// defaultCorpus is where .ci/run installs the corpus, or $TERN_CORPUS.
func defaultCorpus() string {
	if d := os.Getenv("TERN_CORPUS"); d != "" {
		return d
	}
	return filepath.Join(".cache", "corpus", "node_modules", "@stdlib", "datasets-spam-assassin", "data")
}

// corpusMbox writes the corpus .txt files (byte-exact messages) into one
// mbox.
func corpusMbox(dir, path string) (int, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*", "*.txt"))
	if err != nil {
		return 0, err
	}
	sort.Strings(files)
	out, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	defer out.Close()
	w := mbox.NewWriter(out)
	for _, f := range files {
		in, err := os.Open(f)
		if err != nil {
			return 0, err
		}
		_, err = w.WriteMessage("corpus@example.org", time.Unix(1_030_000_000, 0), in)
		in.Close()
		if err != nil {
			return 0, err
		}
	}
	return len(files), w.Flush()
}

// generate writes an mbox of n distinct messages of about size bytes.
func generate(path string, n, size int) error {
	out, err := os.Create(path)
	if err != nil {
		return err
	}
	defer out.Close()
	w := mbox.NewWriter(out)
	rng := rand.New(rand.NewPCG(1, 2))
	words := strings.Fields("the quick brown fox jumps over a lazy dog mail server import from message body lorem ipsum dolor sit amet")
	var body strings.Builder
	base := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range n {
		body.Reset()
		date := base.Add(time.Duration(i) * time.Minute)
		fmt.Fprintf(&body, "Return-Path: <sender%d@example.net>\r\nFrom: Sender %d <sender%d@example.net>\r\nTo: user@example.org\r\n"+
			"Subject: generated message %d\r\nDate: %s\r\nMessage-ID: <%d.bench@example.net>\r\nMIME-Version: 1.0\r\n"+
			"Content-Type: text/plain; charset=utf-8\r\n\r\n", i%997, i%997, i%997, i, date.Format(time.RFC1123Z), i)
		for body.Len() < size {
			if rng.IntN(40) == 0 {
				body.WriteString("\r\nFrom here on, a line the mbox writer must quote.\r\n")
			}
			body.WriteString(words[rng.IntN(len(words))])
			body.WriteByte(' ')
			if rng.IntN(12) == 0 {
				body.WriteString("\r\n")
			}
		}
		body.WriteString("\r\n")
		if _, err := w.WriteMessage(fmt.Sprintf("sender%d@example.net", i%997), date, strings.NewReader(body.String())); err != nil {
			return err
		}
	}
	return w.Flush()
}

// result is what the child reports.
type result struct {
	Stats   transfer.Stats
	Seconds float64
	VmHWMkB int64
}

// measure runs one import in a child process, prints the figures and
// returns messages per second.
func measure(name, src, data string, want int) float64 {
	self, err := os.Executable()
	if err != nil {
		fatal(err)
	}
	cmd := exec.Command(self, "-child", "-data", data, "-src", src)
	cmd.Stderr = os.Stderr
	t0 := time.Now()
	out, err := cmd.Output()
	wall := time.Since(t0)
	if err != nil {
		fatal(fmt.Errorf("%s: %v", name, err))
	}
	var r result
	if err := json.Unmarshal(out, &r); err != nil {
		fatal(fmt.Errorf("%s: %v: %q", name, err, out))
	}
	maxrss := cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss // KiB on Linux
	st, _ := os.Stat(src)
	fmt.Printf("%-15s %7d msgs (%d dup) in %7.1fs: %7.0f msgs/s, %6.1f MiB/s; peak RSS %6.1f MiB (VmHWM %6.1f MiB); wall %s\n",
		name, r.Stats.Messages, r.Stats.Duplicates, r.Seconds, float64(r.Stats.Messages+r.Stats.Duplicates)/r.Seconds,
		float64(st.Size())/(1<<20)/r.Seconds, float64(maxrss)/1024, float64(r.VmHWMkB)/1024, wall.Round(time.Millisecond))
	if int(r.Stats.Messages+r.Stats.Duplicates) != want {
		fmt.Printf("%-15s WARNING: %d messages expected\n", name, want)
	}
	return float64(r.Stats.Messages+r.Stats.Duplicates) / r.Seconds
}

// measureExport runs one export in a child process and prints the
// figures.
func measureExport(name, data, format, out string) {
	self, err := os.Executable()
	if err != nil {
		fatal(err)
	}
	cmd := exec.Command(self, "-child", "-data", data, "-src", format, "-export-to", out)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.Output()
	if err != nil {
		fatal(fmt.Errorf("%s export: %v", name, err))
	}
	var r result
	if err := json.Unmarshal(stdout, &r); err != nil {
		fatal(fmt.Errorf("%s export: %v: %q", name, err, stdout))
	}
	maxrss := cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss
	fmt.Printf("%-15s %7d msgs exported to %-7s in %7.1fs: %7.0f msgs/s, %6.1f MiB/s; peak RSS %6.1f MiB\n",
		name, r.Stats.Messages, format, r.Seconds, float64(r.Stats.Messages)/r.Seconds,
		float64(r.Stats.Bytes)/(1<<20)/r.Seconds, float64(maxrss)/1024)
}

func runExportChild(data, format, out string) error {
	ctx := context.Background()
	st, err := store.Open(ctx, data, store.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return err
	}
	defer st.Close()
	acct, err := st.AccountByAddress(ctx, "user@example.org")
	if err != nil {
		return err
	}
	t0 := time.Now()
	stats, err := transfer.Export(ctx, st, acct, transfer.ExportOptions{Path: out, Format: format})
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(result{Stats: stats, Seconds: time.Since(t0).Seconds(), VmHWMkB: vmHWM()})
}

func runChild(data, src string) error {
	ctx := context.Background()
	st, err := store.Open(ctx, data, store.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return err
	}
	defer st.Close()
	if err := st.AddDomain(ctx, "example.org"); err != nil {
		return err
	}
	acct, err := st.AddAccount(ctx, "user@example.org", "x", "")
	if err != nil {
		return err
	}
	t0 := time.Now()
	stats, err := transfer.Import(ctx, st, acct, transfer.ImportOptions{Path: src})
	secs := time.Since(t0).Seconds()
	if err != nil {
		return err
	}
	batches, writes, busy := st.WriterStats()
	fmt.Fprintf(os.Stderr, "store writer: %d commits, %.1f writes/commit, %v busy\n", batches, float64(writes)/float64(max(batches, 1)), busy.Round(time.Millisecond))
	return json.NewEncoder(os.Stdout).Encode(result{Stats: stats, Seconds: secs, VmHWMkB: vmHWM()})
}

// vmHWM reads the peak resident set size from /proc/self/status (kB).
func vmHWM() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			var kb int64
			fmt.Sscanf(strings.TrimSpace(v), "%d", &kb)
			return kb
		}
	}
	return 0
}
