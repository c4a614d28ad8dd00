package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"github.com/tern-mail/tern/internal/store"
	"github.com/tern-mail/tern/internal/testutil"
)

// TestCrashDurability builds tern, ingests mail over SMTP from several
// clients, kills the server with SIGKILL mid-way, restarts it, and checks
// that every message that got a 250 is in the mailbox, whole, and that the
// database passes PRAGMA integrity_check (the durability rule of
// ARCHITECTURE.md: a 250 only after fsync and commit).
func TestCrashDurability(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := filepath.Join(t.TempDir(), "tern")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Dir = filepath.Join(testutil.RepoRoot(), "cmd", "tern")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	data := filepath.Join(t.TempDir(), "data")
	crashRun(t, bin, "", "init", "-data", data, "-domain", "example.org", "-hostname", "crash.example", "-listen", "127.0.0.1")
	cfgPath := filepath.Join(data, "tern.toml")
	cfg, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	// Every listener on an ephemeral loopback port; the log tells which.
	cfg = regexp.MustCompile(`127\.0\.0\.1:\d+`).ReplaceAll(cfg, []byte("127.0.0.1:0"))
	cfg = regexp.MustCompile(`(?m)^max_conns_per_ip = .*$`).ReplaceAll(cfg, []byte("max_conns_per_ip = 100"))
	if err := os.WriteFile(cfgPath, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	crashRun(t, bin, "crash-test-password\n", "user", "add", "-data", data, "alice@example.org")

	srv, addr := crashStart(t, bin, data)
	acked := crashIngest(t, addr, 300)
	if err := srv.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	srv.Wait()
	acked.mu.Lock()
	n := len(acked.ids)
	acked.mu.Unlock()
	t.Logf("server killed after %d acknowledged messages", n)

	// Restart: the server must come up on the crashed data directory.
	srv, _ = crashStart(t, bin, data)
	srv.Process.Signal(syscall.SIGTERM)
	if err := srv.Wait(); err != nil {
		t.Fatalf("restarted server did not stop cleanly: %v", err)
	}
	crashVerify(t, data, acked.snapshot())
}

type ackSet struct {
	mu  sync.Mutex
	ids map[string]bool
}

func (a *ackSet) snapshot() map[string]bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	m := make(map[string]bool, len(a.ids))
	for k := range a.ids {
		m[k] = true
	}
	return m
}

// crashIngest sends from 8 clients until at least min messages were
// acknowledged, then returns while the clients keep sending (the caller
// kills the server under them).
func crashIngest(t *testing.T, addr string, min int) *ackSet {
	acked := &ackSet{ids: map[string]bool{}}
	enough := make(chan struct{})
	var once sync.Once
	for w := 0; w < 8; w++ {
		go func() {
			for i := 0; ; i++ {
				id := fmt.Sprintf("crash-%d-%d", w, i)
				msg := "From: s@remote.example\r\nSubject: " + id + "\r\n\r\n" + strings.Repeat("line of body text\r\n", 50) + "end " + id + "\r\n"
				c, err := gosmtp.Dial(addr)
				if err != nil {
					return // the server is gone
				}
				err = c.SendMail("s@remote.example", []string{"alice@example.org"}, strings.NewReader(msg))
				c.Close()
				if err != nil {
					return
				}
				acked.mu.Lock()
				acked.ids[id] = true
				if len(acked.ids) >= min {
					once.Do(func() { close(enough) })
				}
				acked.mu.Unlock()
			}
		}()
	}
	select {
	case <-enough:
	case <-time.After(2 * time.Minute):
		t.Fatal("ingest too slow")
	}
	return acked
}

// crashVerify opens the store and checks the acknowledged messages.
func crashVerify(t *testing.T, data string, acked map[string]bool) {
	ctx := context.Background()
	st, err := store.Open(ctx, data, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if res, err := st.IntegrityCheck(ctx); err != nil || res != "ok" {
		t.Fatalf("integrity_check: %q %v", res, err)
	}
	a, err := st.AccountByAddress(ctx, "alice@example.org")
	if err != nil {
		t.Fatal(err)
	}
	mb, err := st.MailboxByName(ctx, a.ID, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	infos, err := st.Messages(ctx, mb.ID, 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	subject := regexp.MustCompile(`(?m)^Subject: (crash-\d+-\d+)\r$`)
	found := map[string]bool{}
	for _, m := range infos {
		f, err := st.OpenBlob(m.BlobID)
		if err != nil {
			t.Fatalf("uid %d: %v", m.UID, err)
		}
		b, err := io.ReadAll(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		sm := subject.FindSubmatch(b)
		if sm == nil {
			t.Fatalf("uid %d: no subject in %.200q", m.UID, b)
		}
		id := string(sm[1])
		if int64(len(b)) != m.Size || !strings.HasSuffix(string(b), "end "+id+"\r\n") {
			t.Fatalf("uid %d (%s): truncated message (%d bytes, size %d)", m.UID, id, len(b), m.Size)
		}
		found[id] = true
	}
	for id := range acked {
		if !found[id] {
			t.Errorf("message %s got a 250 but is not in the mailbox", id)
		}
	}
	t.Logf("%d acknowledged, %d stored (messages in flight at the kill may be stored without their 250)", len(acked), len(found))
}

// crashStart runs `tern serve` and returns it with its SMTP address.
func crashStart(t *testing.T, bin, data string) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(bin, "serve", "-data", data)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	smtpAddr := regexp.MustCompile(`SMTP (127\.0\.0\.1:\d+)`)
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sent := false
		for sc.Scan() {
			if m := smtpAddr.FindStringSubmatch(sc.Text()); m != nil && !sent {
				found <- m[1]
				sent = true
			}
		}
	}()
	select {
	case addr := <-found:
		return cmd, addr
	case <-time.After(30 * time.Second):
		t.Fatal("tern serve did not report its SMTP listener")
	}
	return nil, ""
}

func crashRun(t *testing.T, bin, stdin string, args ...string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Stdin = strings.NewReader(stdin)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("tern %v: %v\n%s", args, err, out)
	}
}
