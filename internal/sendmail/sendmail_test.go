package sendmail

import (
	"context"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"

	"github.com/tern-mail/tern/internal/queue"
	"github.com/tern-mail/tern/internal/store"
)

func TestParseArgs(t *testing.T) {
	cases := []struct {
		args []string
		want Args
	}{
		{[]string{"-t", "-i", "-f", "root@example.org"}, Args{ExtractRecipients: true, IgnoreDots: true, From: "root@example.org"}},
		{[]string{"-oi", "-fme@x", "-FMe Myself", "-odb", "-oQ/tmp", "a@b, c@d", "e@f"}, Args{IgnoreDots: true, From: "me@x", FullName: "Me Myself", Recipients: []string{"a@b", "c@d", "e@f"}}},
		{[]string{"-bm", "-N", "failure,delay", "-R", "hdrs", "-V", "E1", "--", "-weird@x"}, Args{Notify: []string{"FAILURE", "DELAY"}, Ret: "HDRS", EnvID: "E1", Recipients: []string{"-weird@x"}}},
		{[]string{"-r", "<bounce@x>", "-o", "x", "-v", "u@v"}, Args{From: "bounce@x", Verbose: true, Recipients: []string{"u@v"}}},
		// Bundled flags, as PHP's mail() and many cron setups call it.
		{[]string{"-ti"}, Args{ExtractRecipients: true, IgnoreDots: true}},
		{[]string{"-it", "-fx@y"}, Args{ExtractRecipients: true, IgnoreDots: true, From: "x@y"}},
		{[]string{"-tif", "x@y"}, Args{ExtractRecipients: true, IgnoreDots: true, From: "x@y"}},
		{[]string{"-tfx@y"}, Args{ExtractRecipients: true, From: "x@y"}},
		// The null sender, written either way.
		{[]string{"-f", "<>", "a@b"}, Args{NullSender: true, Recipients: []string{"a@b"}}},
		{[]string{"-f", "", "a@b"}, Args{NullSender: true, Recipients: []string{"a@b"}}},
		{[]string{"-f<>", "a@b"}, Args{NullSender: true, Recipients: []string{"a@b"}}},
	}
	for _, c := range cases {
		got, err := ParseArgs(c.args)
		if err != nil {
			t.Fatalf("%v: %v", c.args, err)
		}
		// -o consumes the next argument as its value.
		if !reflect.DeepEqual(*got, c.want) {
			t.Errorf("%v:\n got %+v\nwant %+v", c.args, *got, c.want)
		}
	}
	for _, bad := range [][]string{{}, {"-f"}, {"-bp"}, {"-Z", "a@b"}, {"-N", "sometimes", "a@b"}} {
		if _, err := ParseArgs(bad); !errors.Is(err, ErrUsage) {
			t.Errorf("%v accepted: %v", bad, err)
		}
	}
}

func FuzzParseArgs(f *testing.F) {
	f.Add("-t\x00-i\x00-f\x00a@b")
	f.Add("-oi\x00-Fname\x00x@y,z@w")
	f.Add("--\x00-\x00-N")
	f.Fuzz(func(t *testing.T, s string) {
		a, err := ParseArgs(strings.Split(s, "\x00"))
		if err != nil {
			if !errors.Is(err, ErrUsage) {
				t.Fatalf("error not ErrUsage: %v", err)
			}
			return
		}
		if !a.ExtractRecipients && len(a.Recipients) == 0 {
			t.Fatal("no recipients accepted")
		}
		for _, r := range a.Recipients {
			if r == "" || strings.Contains(r, ",") {
				t.Fatalf("bad recipient %q", r)
			}
		}
	})
}

// fakeQueue records the message and its bytes (the blob goes once the
// sender drops its reference, as no queue row holds one here).
type fakeQueue struct {
	st   *store.Store
	got  *queue.Message
	body []byte
}

func (f *fakeQueue) Enqueue(_ context.Context, m *queue.Message) (int64, error) {
	f.got = m
	r, err := f.st.OpenBlob(m.Blob.ID)
	if err != nil {
		return 0, err
	}
	defer r.Close()
	f.body, err = io.ReadAll(r)
	return 7, err
}

func TestSend(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	q := &fakeQueue{st: st}
	a, _ := ParseArgs([]string{"-t", "-f", "cron@example.org", "extra@example.net"})
	msg := "To: Bob <bob@example.net>, carol@example.net\nCc: dave@example.net\nBcc: secret@example.net,\n bob@example.net\nSubject: report\n\nline 1\n.\nline 3\n"
	// Without -i the lone dot ends the message.
	id, err := Send(ctx, Options{Queue: q, Blobs: st, Hostname: "mail.example.org"}, a, strings.NewReader(msg))
	if err != nil || id != 7 {
		t.Fatal(id, err)
	}
	var rcpts []string
	for _, r := range q.got.Recipients {
		rcpts = append(rcpts, r.Address)
	}
	want := []string{"extra@example.net", "bob@example.net", "carol@example.net", "dave@example.net", "secret@example.net"}
	if !reflect.DeepEqual(rcpts, want) || q.got.From != "cron@example.org" {
		t.Fatalf("rcpts %v from %q", rcpts, q.got.From)
	}
	s := string(q.body)
	for _, want := range []string{"From: <cron@example.org>\r\n", "Date: ", "Message-ID: <", "@mail.example.org>", "Subject: report\r\n", "\r\n\r\nline 1\r\n"} {
		if !strings.Contains(s, want) {
			t.Errorf("message lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, "secret") || strings.Contains(s, "Bcc") || strings.Contains(s, "line 3") {
		t.Errorf("Bcc kept or dot not honoured:\n%s", s)
	}

	// With -i the dot is data; no recipients with -t and none in header.
	a2, _ := ParseArgs([]string{"-t", "-i"})
	if _, err := Send(ctx, Options{Queue: q, Blobs: st}, a2, strings.NewReader("Subject: x\n\nbody\n")); !errors.Is(err, ErrNoRecipients) {
		t.Fatalf("no recipients: %v", err)
	}
	a3, _ := ParseArgs([]string{"-i", "x@y"})
	if _, err := Send(ctx, Options{Queue: q, Blobs: st, DefaultFrom: "me@h"}, a3, strings.NewReader("Subject: x\n\na\n.\nb\n")); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(q.body), "a\r\n.\r\nb\r\n") || q.got.From != "me@h" {
		t.Fatalf("-i: %q from %q", q.body, q.got.From)
	}

	// -f '<>': an empty envelope sender, but the header still has a From.
	a4, _ := ParseArgs([]string{"-ti", "-f", "<>"})
	if _, err := Send(ctx, Options{Queue: q, Blobs: st, DefaultFrom: "me@h"}, a4, strings.NewReader("To: r@x\n\nhi\n")); err != nil {
		t.Fatal(err)
	}
	if q.got.From != "" || !strings.Contains(string(q.body), "From: <me@h>\r\n") {
		t.Fatalf("null sender: from %q body %q", q.got.From, q.body)
	}
}
