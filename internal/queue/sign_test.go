package queue

import (
	"bytes"
	"context"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/emersion/go-smtp"
	"github.com/foxcpp/go-mockdns"

	"github.com/tern-mail/tern/internal/store"
)

// countingSigner counts the signatures made.
type countingSigner struct {
	s     Signer
	calls atomic.Int32
}

func (c *countingSigner) Sign(d string, r io.Reader) ([]byte, error) {
	c.calls.Add(1)
	return c.s.Sign(d, r)
}

func (c *countingSigner) SignBytes(d string, m []byte) ([]byte, error) {
	c.calls.Add(1)
	return c.s.SignBytes(d, m)
}

// TestSignedOncePerMessage: a message for two domains, deferred by one of
// them twice and delivered by the third attempt, is signed once; the
// retries send the signatures kept with the queue entry, which still
// verify, and so does a queue restarted on the same store.
func TestSignedOncePerMessage(t *testing.T) {
	r := startReceiver(t, "127.0.0.3:0", nil)
	var refusals atomic.Int32
	r.reject = func(rcpt string) error {
		if strings.HasSuffix(rcpt, "@c.test") && refusals.Add(1) <= 2 {
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try later"}
		}
		return nil
	}
	zones := mxZone(0)
	zones["c.test."] = mockdns.Zone{MX: []net.MX{{Host: "mx.b.test.", Pref: 10}}}
	e := newEnv(t, zones, Config{Port: r.port()})
	cs := &countingSigner{s: e.keys}
	e.q.cfg.DKIM = cs
	e.run(t)
	id := e.submit(t, testMessage, "bob@b.test", "carol@c.test")
	waitFor(t, 10*time.Second, "the first attempt", func() bool { return len(r.messages()) == 1 })
	var kept store.QueueEntry
	waitFor(t, 10*time.Second, "signatures kept with the entry", func() bool {
		var err error
		kept, err = e.st.QueueGet(context.Background(), id)
		return err == nil && len(kept.DKIM) > 0 && kept.Attempts >= 1
	})
	// Restart: a new queue on the same store reads the kept signatures.
	e.stop()
	e.stop = nil
	e.q = New(e.q.cfg)
	e.run(t)
	waitFor(t, 10*time.Second, "delivery to c.test", func() bool { return len(r.messages()) == 2 && e.queueLen(t) == 0 })
	if n := cs.calls.Load(); n != 1 {
		t.Fatalf("signed %d times, want once", n)
	}
	// Both runs registered a cleanup calling e.stop: stop once here.
	e.stop()
	e.stop = nil
	for i, m := range r.messages() {
		if !bytes.HasPrefix(m.Data, kept.DKIM) {
			t.Fatalf("message %d does not carry the kept signatures", i)
		}
		vs, err := dkim.VerifyWithOptions(bytes.NewReader(m.Data), &dkim.VerifyOptions{LookupTXT: e.lookupTXT})
		if err != nil || len(vs) != 2 {
			t.Fatalf("message %d: %v, %d signatures", i, err, len(vs))
		}
		for _, v := range vs {
			if v.Err != nil {
				t.Fatalf("message %d: %v", i, v.Err)
			}
		}
	}
}
