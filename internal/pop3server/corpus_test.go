package pop3server

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tern-mail/tern/internal/store"
	"github.com/tern-mail/tern/internal/testutil"
)

// refTop is TOP computed independently from writeBody: the wire form up
// to the blank line after the header, then n lines.
func refTop(wire string, n int) string {
	lines := strings.SplitAfter(wire, "\r\n")
	for i, l := range lines {
		if l == "\r\n" {
			return strings.Join(lines[:min(len(lines), i+1+n)], "")
		}
	}
	return wire
}

// TestCorpus downloads every corpus message: RETR is the stored bytes with
// CRLF line ends, LIST sizes are the octets sent, TOP n is exact.
func TestCorpus(t *testing.T) {
	if testing.Short() {
		t.Skip("corpus test in -short mode")
	}
	files := testutil.CorpusFiles(t)
	e := newEnv(t, envOpts{insecure: true})
	bodies := make([][]byte, len(files))
	var wg sync.WaitGroup
	work := make(chan int)
	errs := make(chan error, len(files))
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				b, err := os.ReadFile(files[i])
				if err != nil {
					errs <- err
					continue
				}
				bodies[i] = b
				d, err := e.st.Append(context.Background(), store.AppendRequest{AccountID: e.acct.ID, MailboxID: e.inbox.ID,
					Body: bytes.NewReader(b), InternalDate: time.Unix(int64(1e9+i), 0)})
				if err == nil {
					err = d.Err
				}
				if err != nil {
					errs <- fmt.Errorf("%s: %w", files[i], err)
				}
			}
		}()
	}
	for i := range files {
		work <- i
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// Map UIDs (in order) back to files by content: appends ran
	// concurrently, so UID order is not file order.
	byContent := map[string]int{}
	for i, b := range bodies {
		byContent[string(normalize(b))] = i
	}
	c := e.dial()
	c.c.SetDeadline(time.Now().Add(10 * time.Minute))
	c.login()
	c.ok("LIST")
	list := strings.Split(strings.TrimSuffix(c.multi(), "\r\n"), "\r\n")
	if len(list) != len(files) {
		t.Fatalf("LIST has %d messages, want %d", len(list), len(files))
	}
	seen := map[int]bool{}
	for n := 1; n <= len(files); n++ {
		_, sz, _ := strings.Cut(list[n-1], " ")
		size, _ := strconv.Atoi(sz)
		c.ok(fmt.Sprintf("RETR %d", n))
		wire := c.multi()
		i, ok := byContent[wire]
		if !ok {
			t.Fatalf("RETR %d: bytes match no corpus message (%.200q)", n, wire)
		}
		seen[i] = true
		// Known approximation: a message whose last line has no line end
		// (one in the corpus) is announced without the CRLF POP3 adds.
		if size != len(wire) && !(size == len(wire)-2 && !bytes.HasSuffix(bodies[i], []byte("\n"))) {
			t.Errorf("%s: LIST says %d octets, RETR sent %d", files[i], size, len(wire))
		}
		for _, lines := range []int{0, 1, 7} {
			c.ok(fmt.Sprintf("TOP %d %d", n, lines))
			if got, want := c.multi(), refTop(wire, lines); got != want {
				t.Fatalf("%s: TOP %d:\n got %.300q\nwant %.300q", files[i], lines, got, want)
			}
		}
	}
	if len(seen) != len(byContent) {
		t.Errorf("downloaded %d distinct messages of %d", len(seen), len(byContent))
	}
	c.ok("QUIT")
}
