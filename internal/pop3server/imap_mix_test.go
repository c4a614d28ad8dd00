package pop3server

import (
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/tern-mail/tern/internal/imapserver"
)

// TestMixedWithIMAP runs POP3 and IMAP on one account through the real
// IMAP server and go-imap's client: flags set in IMAP survive a POP3
// session that deleted nothing, RETR shows as \Seen, and POP3 deletes show
// as expunges in a selected IMAP session.
func TestMixedWithIMAP(t *testing.T) {
	e := newEnv(t, envOpts{insecure: true, seen: true})
	for _, m := range []string{msg1, msg2, msg3} {
		e.deliver(m)
	}
	isrv := imapserver.New(imapserver.Config{Store: e.st, Accounts: e.accts, InsecureAuth: true, Hostname: "mail.example.org"})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go isrv.Serve(l)
	defer l.Close()

	var mu sync.Mutex
	var expunged []uint32
	ic, err := imapclient.DialInsecure(l.Addr().String(), &imapclient.Options{UnilateralDataHandler: &imapclient.UnilateralDataHandler{
		Expunge: func(seq uint32) {
			mu.Lock()
			expunged = append(expunged, seq)
			mu.Unlock()
		},
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer ic.Close()
	if err := ic.Login(testUser, testPass).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := ic.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := ic.Store(imap.SeqSetNum(2, 3), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagFlagged, "$Work"}}, nil).Close(); err != nil {
		t.Fatal(err)
	}

	// POP3 session that deletes nothing but downloads message 1.
	c := e.dial()
	c.login()
	c.ok("RETR 1")
	c.multi()
	c.ok("QUIT")
	c.closed()

	flags := func() map[uint32][]string {
		msgs, err := ic.Fetch(imap.SeqSetNum(1, 2, 3), &imap.FetchOptions{UID: true, Flags: true}).Collect()
		if err != nil {
			t.Fatal(err)
		}
		out := map[uint32][]string{}
		for _, m := range msgs {
			var f []string
			for _, x := range m.Flags {
				f = append(f, string(x))
			}
			slices.Sort(f)
			out[m.SeqNum] = f
		}
		return out
	}
	if err := ic.Noop().Wait(); err != nil {
		t.Fatal(err)
	}
	got := flags()
	if !slices.Equal(got[1], []string{`\Seen`}) || !slices.Equal(got[2], []string{"$Work", `\Flagged`}) || !slices.Equal(got[3], []string{"$Work", `\Flagged`}) {
		t.Fatalf("IMAP flags after POP3 session: %v", got)
	}

	// POP3 deletes messages 1 and 3: the IMAP session sees two expunges.
	c = e.dial()
	c.login()
	c.ok("DELE 1")
	c.ok("DELE 3")
	c.ok("QUIT")
	c.closed()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if err := ic.Noop().Wait(); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		n := len(expunged)
		mu.Unlock()
		if n >= 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	// Expunging 1 then 3 (now 2) or 3 then 1: either order is valid.
	if len(expunged) != 2 {
		t.Fatalf("IMAP saw expunges %v", expunged)
	}
	msgs, err := ic.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{Flags: true}).Collect()
	if err != nil || len(msgs) != 1 || !slices.Contains(msgs[0].Flags, imap.FlagFlagged) {
		t.Fatalf("remaining message: %+v %v", msgs, err)
	}
}
