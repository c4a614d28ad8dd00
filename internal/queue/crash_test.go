package queue

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tern-mail/tern/internal/store"
)

// TestCrashKeepsAcknowledged runs a child process that queues messages
// and reports each acknowledged id, kills it with SIGKILL mid-stream,
// and checks that every acknowledged entry is in the queue exactly once
// with its message file intact.
func TestCrashKeepsAcknowledged(t *testing.T) {
	if dir := os.Getenv("TERN_QUEUE_CRASH_CHILD"); dir != "" {
		crashChild(dir)
		return
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashKeepsAcknowledged$")
	cmd.Env = append(os.Environ(), "TERN_QUEUE_CRASH_CHILD="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	acked := map[int64]bool{}
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if id, ok := strings.CutPrefix(sc.Text(), "acked "); ok {
			n, _ := strconv.ParseInt(id, 10, 64)
			acked[n] = true
			if len(acked) == 150 {
				cmd.Process.Kill() // SIGKILL: no chance to clean up
				break
			}
		}
	}
	cmd.Wait()
	if len(acked) < 150 {
		t.Fatalf("child acknowledged only %d", len(acked))
	}
	st, err := store.Open(context.Background(), dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	entries, err := st.QueueList(context.Background(), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int64]int{}
	for _, e := range entries {
		seen[e.ID]++
		f, err := st.OpenBlob(e.Blob.ID)
		if err != nil {
			t.Fatalf("entry %d lost its message file: %v", e.ID, err)
		}
		f.Close()
	}
	for id := range acked {
		if seen[id] != 1 {
			t.Fatalf("acknowledged entry %d present %d times", id, seen[id])
		}
	}
	if ok, err := st.IntegrityCheck(context.Background()); err != nil || ok != "ok" {
		t.Fatalf("integrity: %v %v", ok, err)
	}
}

// crashChild queues messages from 8 goroutines until killed.
func crashChild(dir string) {
	ctx := context.Background()
	st, err := store.Open(ctx, dir, store.Options{})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	q := New(Config{Store: st})
	w := bufio.NewWriter(os.Stdout)
	lines := make(chan string, 64)
	for g := 0; g < 8; g++ {
		go func() {
			for {
				bw, err := st.NewBlob()
				if err != nil {
					continue
				}
				bw.Write([]byte(testMessage))
				b, err := bw.Commit()
				if err != nil {
					continue
				}
				id, err := q.Enqueue(ctx, &Message{From: "a@a.test", Blob: b, Recipients: []Recipient{{Address: "x@far.test"}}})
				if err == nil {
					lines <- fmt.Sprintf("acked %d", id)
				}
			}
		}()
	}
	for l := range lines {
		w.WriteString(l + "\n")
		w.Flush()
	}
	time.Sleep(time.Hour)
}
