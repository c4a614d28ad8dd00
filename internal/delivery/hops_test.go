package delivery

import (
	"context"
	"errors"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/tern-mail/tern/internal/smtp"
)

func TestHopCounter(t *testing.T) {
	cases := []struct {
		msg  string
		want int
	}{
		{"Received: a\r\nreceived: b\r\nRECEIVED:c\r\nSubject: x\r\n\r\nReceived: in body\r\n", 3},
		{"Subject: x\r\n Received: a folded line\r\nX-Received: no\r\n\r\n", 0},
		{"Received: a\n\nReceived: body of a bare-LF message\n", 1},
		{"Receive: a\r\nReceived", 0},
		{"\r\nReceived: body only\r\n", 0},
	}
	for _, c := range cases {
		// Byte by byte and whole: the count must not depend on how
		// the writes split the stream.
		for _, split := range []bool{false, true} {
			h := newHopCounter()
			if split {
				for i := range len(c.msg) {
					h.Write([]byte{c.msg[i]})
				}
			} else {
				h.Write([]byte(c.msg))
			}
			if h.n != c.want {
				t.Errorf("%q split=%v: %d, want %d", c.msg, split, h.n, c.want)
			}
		}
	}
}

func TestSpoolRefusesLoops(t *testing.T) {
	_, d, _, _ := setup(t)
	ctx := context.Background()
	trace := []byte("Received: by this hop\r\n")
	body := strings.Repeat("Received: from x by y; Mon, 1 Jan 2024 00:00:00 +0000\r\n", MaxHops-1) + "Subject: loop\r\n\r\nhi\r\n"
	if _, err := d.Spool(ctx, trace, iotest.HalfReader(strings.NewReader(body)), 0); err != nil {
		t.Fatalf("%d hops refused: %v", MaxHops, err)
	}
	var r *smtp.Reply
	_, err := d.Spool(ctx, trace, strings.NewReader("Received: one more\r\n"+body), 0)
	if !errors.As(err, &r) || r.Code != 554 || r.Enhanced != (smtp.EnhancedCode{5, 4, 6}) {
		t.Fatalf("%d hops: %v", MaxHops+1, err)
	}
}
