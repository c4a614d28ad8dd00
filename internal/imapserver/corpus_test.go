package imapserver

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/tern-mail/tern/internal/message"
	"github.com/tern-mail/tern/internal/store"
	"github.com/tern-mail/tern/internal/testutil"
)

var update = flag.Bool("update", false, "rewrite golden files")

// deliverFiles stores files in a mailbox concurrently (so the store's group
// commit batches them) and returns the UID of each file.
func (ts *testServer) deliverFiles(t *testing.T, mailbox string, files []string) {
	ctx := context.Background()
	mb, err := ts.st.MailboxByName(ctx, ts.acct.ID, mailbox)
	if err != nil {
		t.Fatal(err)
	}
	type job struct {
		i    int
		file string
	}
	// UIDs follow commit order; deliver in order within small waves so
	// that golden files can name messages by file.
	var wg sync.WaitGroup
	errs := make(chan error, len(files))
	sem := make(chan bool, 8)
	for i, f := range files {
		wg.Add(1)
		sem <- true
		go func(j job) {
			defer wg.Done()
			defer func() { <-sem }()
			b, err := os.ReadFile(j.file)
			if err != nil {
				errs <- err
				return
			}
			p, err := message.Parse(bytes.NewReader(b))
			if err != nil {
				errs <- fmt.Errorf("%s: %w", j.file, err)
				return
			}
			w, err := ts.st.NewBlob()
			if err != nil {
				errs <- err
				return
			}
			w.Write(b)
			blob, err := w.Commit()
			if err != nil {
				errs <- err
				return
			}
			_, err = ts.st.Deliver(ctx, &store.Delivery{Blob: blob, Parsed: p, InternalDate: time.Unix(1700000000, 0).UTC(),
				Targets: []store.Target{{AccountID: ts.acct.ID, MailboxID: mb.ID}}, IgnoreQuota: true})
			if err != nil {
				errs <- err
			}
		}(job{i, f})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// TestCorpusFetch stores the whole spam-assassin corpus and fetches every
// ENVELOPE and BODYSTRUCTURE through the go-imap client (which parses
// them strictly), then compares a sample with golden files.
func TestCorpusFetch(t *testing.T) {
	if testing.Short() {
		t.Skip("corpus test in -short mode")
	}
	files := testutil.CorpusFiles(t)
	ts := newTestServer(t)
	start := time.Now()
	ts.deliverFiles(t, "INBOX", files)
	t.Logf("stored %d messages in %v", len(files), time.Since(start))
	c := ts.client()
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	msgs, err := c.Fetch(imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true, Envelope: true,
		BodyStructure: &imap.FetchItemBodyStructure{Extended: true}, RFC822Size: true}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	_ = msgs
	t.Logf("fetched %d envelopes and body structures in %v", len(msgs), time.Since(start))
	if len(msgs) != len(files) {
		t.Fatalf("fetched %d of %d", len(msgs), len(files))
	}
	for _, m := range msgs {
		if m.Envelope == nil || m.BodyStructure == nil {
			t.Fatalf("UID %d: missing envelope or body structure", m.UID)
		}
	}
}

// TestCorpusGolden stores a sample of the corpus (every 150th file) and
// compares the raw FETCH (ENVELOPE BODYSTRUCTURE) answer and a few BODY
// sections with testdata/golden (go test -run TestCorpusGolden -update).
func TestCorpusGolden(t *testing.T) {
	all := testutil.CorpusFiles(t)
	var files []string
	for i := 0; i < len(all); i += 150 {
		files = append(files, all[i])
	}
	ts := newTestServer(t)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		ts.deliver("INBOX", crlf(string(b)))
	}
	r := ts.raw()
	r.login()
	r.expectOK("s", "SELECT INBOX")
	for i, f := range files {
		name := filepath.Base(filepath.Dir(f)) + "-" + strings.TrimSuffix(filepath.Base(f), ".txt")
		var got bytes.Buffer
		for _, item := range []string{"(ENVELOPE BODYSTRUCTURE)", "(BODY.PEEK[HEADER.FIELDS (FROM SUBJECT)] BODY.PEEK[1.MIME] BODY.PEEK[TEXT]<0.200>)"} {
			r.send(fmt.Sprintf("f FETCH %d %s", i+1, item))
			got.WriteString(readRawUntil(t, r, "f"))
		}
		path := filepath.Join("testdata", "golden", name+".txt")
		if *update {
			os.MkdirAll(filepath.Dir(path), 0o755)
			if err := os.WriteFile(path, got.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run with -update to create)", err)
		}
		if !bytes.Equal(got.Bytes(), want) {
			t.Errorf("%s differs from %s:\n%s", name, path, got.String())
		}
	}
}

// readRawUntil reads raw bytes (literals included) up to the tagged line.
func readRawUntil(t *testing.T, r *raw, tag string) string {
	var sb strings.Builder
	for {
		r.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		l, err := r.br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		sb.WriteString(l)
		if n, ok := trailingLiteral(l); ok {
			buf := make([]byte, n)
			if _, err := ioReadFull(r.br, buf); err != nil {
				t.Fatal(err)
			}
			sb.Write(buf)
			continue
		}
		if strings.HasPrefix(l, tag+" ") {
			return sb.String()
		}
	}
}

func trailingLiteral(l string) (int, bool) {
	l = strings.TrimRight(l, "\r\n")
	if !strings.HasSuffix(l, "}") {
		return 0, false
	}
	i := strings.LastIndexByte(l, '{')
	if i < 0 {
		return 0, false
	}
	n := 0
	for _, c := range l[i+1 : len(l)-1] {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

func ioReadFull(br *bufio.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := br.Read(buf[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

var _ net.Conn
