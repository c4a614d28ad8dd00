//go:build unix

package store

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// openWithOutsider opens a store and a connection to its database that
// does not go through walVFS: another process's view (the CLI's).
func openWithOutsider(t *testing.T) (s *Store, dir string, outsider *sql.DB) {
	t.Helper()
	dir = t.TempDir()
	s, err := Open(context.Background(), dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	outsider, err = sql.Open("sqlite", "file:"+filepath.Join(dir, "tern.db")+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { outsider.Close() })
	return s, dir, outsider
}

// TestWALVFSGathersFrames checks that a commit's WAL frames reach the
// file in a few writes, and that a connection outside walVFS (another
// process's view) sees every commit as soon as the store acknowledges it.
func TestWALVFSGathersFrames(t *testing.T) {
	s, dir, other := openWithOutsider(t)
	ctx := context.Background()
	a := mustAccount(t, s, "a@example.org")
	inbox, _ := s.MailboxByName(ctx, a.ID, "INBOX")
	w0, f0, b0 := walStats.writes.Load(), walStats.flushes.Load(), walStats.atBarrier.Load()
	for i := 1; i <= 200; i++ {
		appendMsg(t, s, a, "INBOX", msg(fmt.Sprint("m", i))+strings.Repeat("line\r\n", i))
		var n int
		if err := other.QueryRow("SELECT count(*) FROM messages WHERE mailbox_id = ?", inbox.ID).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != i {
			t.Fatalf("after %d appends the other connection sees %d messages", i, n)
		}
	}
	writes, flushes := walStats.writes.Load()-w0, walStats.flushes.Load()-f0
	t.Logf("%d WAL writes from SQLite, %d made", writes, flushes)
	if writes == 0 || flushes*4 > writes {
		t.Errorf("%d WAL writes became %d: not gathered", writes, flushes)
	}
	// Commits are written at their commit frame, not while the WAL-index
	// header is half-written.
	if n := walStats.atBarrier.Load() - b0; n != 0 {
		t.Errorf("%d commits written at the barrier", n)
	}
	checkIntegrity(t, s)
	// The WAL grows by whole reserved chunks.
	if st, err := os.Stat(filepath.Join(dir, "tern.db-wal")); err != nil || st.Size()%walReserve != 0 {
		t.Errorf("WAL size %v (%v), want a multiple of %d", st.Size(), err, walReserve)
	}
}

// TestWALVFSRolledBack: a write transaction that spilled frames and rolled
// back must not leave them to be written after it gave up the write lock,
// over what the next writer (here another process's connection, as the
// CLI's) commits at the same offsets.
func TestWALVFSRolledBack(t *testing.T) {
	s, _, cli := openWithOutsider(t)
	ctx := context.Background()
	if _, err := cli.Exec("CREATE TABLE junk(x)"); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	err := s.update(ctx, func(ctx context.Context, tx *wtx) error {
		for i := 0; i < 40; i++ { // 4 MB: more than the page cache holds
			if _, err := tx.ExecContext(ctx, "INSERT INTO junk VALUES(randomblob(100000))"); err != nil {
				return err
			}
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("the failing write: %v", err)
	}
	if _, err := cli.Exec("INSERT INTO junk VALUES(randomblob(3000000))"); err != nil {
		t.Fatal(err)
	}
	// The store's connection writes and reads again.
	if err := s.AddDomain(ctx, "example.org"); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := cli.QueryRow("SELECT count(*) FROM junk").Scan(&n); err != nil || n != 1 {
		t.Errorf("junk: %d rows, %v", n, err)
	}
	checkIntegrity(t, s)
}

// TestWALVFSExclusiveMode: in exclusive locking mode SQLite takes no
// shared-memory locks and calls no barrier; commits must still be in the
// file when they return (what a crash leaves is read back).
func TestWALVFSExclusiveMode(t *testing.T) {
	if err := registerWALVFS(); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "x.db")
	db, err := sql.Open("sqlite", "file:"+path+"?vfs="+walVFSName+"&_pragma=locking_mode(EXCLUSIVE)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	for _, q := range []string{"CREATE TABLE t(x)", "INSERT INTO t VALUES(1)", "INSERT INTO t VALUES(2)"} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(q, err)
		}
	}
	crashed := t.TempDir()
	for _, suffix := range []string{"", "-wal"} {
		b, err := os.ReadFile(path + suffix)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(crashed, "x.db"+suffix), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	after, err := sql.Open("sqlite", "file:"+filepath.Join(crashed, "x.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer after.Close()
	var n int
	if err := after.QueryRow("SELECT count(*) FROM t").Scan(&n); err != nil || n != 2 {
		t.Errorf("after the crash: %d rows, %v; 2 were committed", n, err)
	}
}

// TestWALVFSCrash kills a process that is appending through walVFS and
// checks that every append it was told had succeeded is there after
// recovery, in a sound database.
func TestWALVFSCrash(t *testing.T) {
	if dir := os.Getenv("TERN_WALVFS_CRASH_DIR"); dir != "" {
		walVFSCrashChild(dir)
		return
	}
	if testing.Short() {
		t.Skip("runs a child process")
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestWALVFSCrash$")
	cmd.Env = append(os.Environ(), "TERN_WALVFS_CRASH_DIR="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	acked := map[uint32]bool{}
	sc := bufio.NewScanner(out)
	for sc.Scan() && len(acked) < 400 {
		if uid, ok := strings.CutPrefix(sc.Text(), "ack "); ok {
			n, _ := strconv.Atoi(uid)
			acked[uint32(n)] = true
		}
	}
	cmd.Process.Signal(syscall.SIGKILL)
	// What the child printed before the kill counts too.
	for sc.Scan() {
		if uid, ok := strings.CutPrefix(sc.Text(), "ack "); ok {
			n, _ := strconv.Atoi(uid)
			acked[uint32(n)] = true
		}
	}
	cmd.Wait()
	if len(acked) < 400 {
		t.Fatalf("child acknowledged only %d appends", len(acked))
	}
	s, err := Open(context.Background(), dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	acct, err := s.AccountByAddress(ctx, "a@example.org")
	if err != nil {
		t.Fatal(err)
	}
	inbox, _ := s.MailboxByName(ctx, acct.ID, "INBOX")
	infos, err := s.Messages(ctx, inbox.ID, 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	have := map[uint32]bool{}
	for _, m := range infos {
		have[m.UID] = true
	}
	for uid := range acked {
		if !have[uid] {
			t.Errorf("acknowledged UID %d lost", uid)
		}
	}
	t.Logf("%d acknowledged, %d after recovery", len(acked), len(have))
	checkIntegrity(t, s)
}

func walVFSCrashChild(dir string) {
	ctx := context.Background()
	s, err := Open(ctx, dir, Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	s.AddDomain(ctx, "example.org")
	a, err := s.AddAccount(ctx, "a@example.org", "h", "")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	inbox, _ := s.MailboxByName(ctx, a.ID, "INBOX")
	var mu sync.Mutex
	w := bufio.NewWriter(os.Stdout)
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; ; i++ {
				body := msg(fmt.Sprint(g, "-", i)) + strings.Repeat("text\r\n", i%300)
				d, err := s.Append(ctx, AppendRequest{AccountID: a.ID, MailboxID: inbox.ID, Body: strings.NewReader(body)})
				if err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(1)
				}
				mu.Lock()
				fmt.Fprintf(w, "ack %d\n", d.UID)
				w.Flush()
				mu.Unlock()
			}
		}(g)
	}
	wg.Wait()
}

// TestWALVFSFileSizeLimit makes the WAL unable to grow (a file size limit
// standing in for a full disk) and checks that the commit that needed the
// space fails with an error, not a stopped process (its last frames would
// otherwise first reach the file at the barrier, where no error can be
// returned), and that the store works on once there is room again.
func TestWALVFSFileSizeLimit(t *testing.T) {
	if dir := os.Getenv("TERN_WALVFS_LIMIT_DIR"); dir != "" {
		walVFSLimitChild(dir)
		return
	}
	if testing.Short() {
		t.Skip("runs a child process")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestWALVFSFileSizeLimit$")
	cmd.Env = append(os.Environ(), "TERN_WALVFS_LIMIT_DIR="+t.TempDir())
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "child: ok") {
		t.Fatalf("child: %v\n%s", err, out)
	}
	t.Logf("%s", strings.TrimSpace(string(out)))
}

func walVFSLimitChild(dir string) {
	fail := func(f string, args ...any) {
		fmt.Printf("child: "+f+"\n", args...)
		os.Exit(1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := Open(ctx, dir, Options{})
	if err != nil {
		fail("%v", err)
	}
	defer s.Close()
	// A connection of its own that never checkpoints, so that the WAL
	// only grows; commits of 24 KiB, well inside walVFS's buffer.
	conn, err := s.wdb.Conn(ctx)
	if err != nil {
		fail("%v", err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "PRAGMA wal_autocheckpoint = 0"); err != nil {
		fail("%v", err)
	}
	if _, err := conn.ExecContext(ctx, "CREATE TABLE junk(x)"); err != nil {
		fail("%v", err)
	}
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		fail("%v", err)
	}
	rows := 0
	// fill commits under a file size limit until one fails, then lifts
	// the limit and commits once more.
	fill := func(limit uint64) {
		limited := old
		limited.Cur = limit
		if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &limited); err != nil {
			fail("%v", err)
		}
		var err error
		commits := 0
		for ; commits < 1000; commits++ {
			if _, err = conn.ExecContext(ctx, "INSERT INTO junk VALUES(randomblob(24000))"); err != nil {
				break
			}
		}
		if err == nil {
			fail("%d commits of 24 KB fitted under a %d-byte file size limit", commits, limit)
		}
		rows += commits
		fmt.Printf("child: limit %d: error after %d commits: %v\n", limit, commits, err)
		if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
			fail("%v", err)
		}
		if _, err := conn.ExecContext(ctx, "INSERT INTO junk VALUES(randomblob(24000))"); err != nil {
			fail("with room again: %v", err)
		}
		rows++
	}
	// The WAL grows past its reserved space.
	fill(walReserve + 1<<10)
	// Another connection empties the WAL file: what this one had
	// reserved is gone.
	other, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "tern.db"))
	if err != nil {
		fail("%v", err)
	}
	defer other.Close()
	var busy, logged, done int
	if err := other.QueryRowContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)").Scan(&busy, &logged, &done); err != nil || busy != 0 {
		fail("checkpoint: busy %d, %v", busy, err)
	}
	fill(walReserve / 4)
	var n int
	if err := conn.QueryRowContext(ctx, "SELECT count(*) FROM junk").Scan(&n); err != nil || n != rows {
		fail("junk has %d rows, want %d (%v)", n, rows, err)
	}
	if err := s.AddDomain(ctx, "example.org"); err != nil {
		fail("%v", err)
	}
	a, err := s.AddAccount(ctx, "a@example.org", "h", "")
	if err == nil {
		inbox, _ := s.MailboxByName(ctx, a.ID, "INBOX")
		_, err = s.Append(ctx, AppendRequest{AccountID: a.ID, MailboxID: inbox.ID, Body: strings.NewReader(msg("after"))})
	}
	if err != nil {
		fail("append with room again: %v", err)
	}
	if res, err := s.IntegrityCheck(ctx); err != nil || res != "ok" {
		fail("integrity: %q %v", res, err)
	}
	fmt.Println("child: ok")
}
