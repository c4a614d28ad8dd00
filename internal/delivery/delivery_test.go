package delivery

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/tern-mail/tern/internal/account"
	"github.com/tern-mail/tern/internal/smtp"
	"github.com/tern-mail/tern/internal/store"
)

func setup(t *testing.T) (*store.Store, *Deliverer, store.Account, store.Account) {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.AddDomain(ctx, "example.org"); err != nil {
		t.Fatal(err)
	}
	svc := account.New(st)
	a, err := svc.Add(ctx, "alice@example.org", "password-a-1")
	if err != nil {
		t.Fatal(err)
	}
	b, err := svc.Add(ctx, "bob@example.org", "password-b-1")
	if err != nil {
		t.Fatal(err)
	}
	return st, New(st, Options{}), a, b
}

func TestLookup(t *testing.T) {
	st, d, _, _ := setup(t)
	ctx := context.Background()
	res, err := d.Lookup(ctx, smtp.Address{Local: "alice+x", Domain: "EXAMPLE.org"}, 0)
	if err != nil || len(res.Accounts) != 1 || res.Accounts[0].Address != "alice@example.org" {
		t.Fatalf("subaddress: %+v %v", res, err)
	}
	var r *smtp.Reply
	if _, err := d.Lookup(ctx, smtp.Address{Local: "nobody", Domain: "example.org"}, 0); !errors.As(err, &r) || r.Code != 550 {
		t.Fatalf("unknown: %v", err)
	}
	if _, err := d.Lookup(ctx, smtp.Address{Local: "postmaster"}, 0); !errors.As(err, &r) || r.Code != 550 {
		t.Fatalf("postmaster without account: %v", err)
	}
	st.AddAlias(ctx, "postmaster@example.org", []string{"alice@example.org"})
	if res, err := d.Lookup(ctx, smtp.Address{Local: "Postmaster"}, 0); err != nil || len(res.Accounts) != 1 {
		t.Fatalf("postmaster: %+v %v", res, err)
	}
	st.SetQuota(ctx, "bob@example.org", 100)
	if _, err := d.Lookup(ctx, smtp.Address{Local: "bob", Domain: "example.org"}, 200); !errors.As(err, &r) || r.Code != 452 {
		t.Fatalf("quota: %v", err)
	}
	if ok, err := d.IsLocal(ctx, "Example.ORG"); !ok || err != nil {
		t.Fatalf("IsLocal: %v %v", ok, err)
	}
}

func TestSpoolAndStore(t *testing.T) {
	st, d, a, b := setup(t)
	ctx := context.Background()
	var r *smtp.Reply
	if _, err := d.Spool(ctx, nil, strings.NewReader(strings.Repeat("x", 101)), 100); !errors.As(err, &r) || r.Code != 552 {
		t.Fatalf("over limit: %v", err)
	}
	hdr := TraceHeader(smtp.Address{Local: "s", Domain: "remote.example"}, smtp.ReceivedInfo{By: "mx", With: "ESMTP"})
	sp, err := d.Spool(ctx, hdr, strings.NewReader("Subject: hello\r\n\r\nbody\r\n"), 0)
	if err != nil {
		t.Fatal(err)
	}
	if sp.Parsed.Envelope.Subject != "hello" {
		t.Fatalf("parsed subject %q", sp.Parsed.Envelope.Subject)
	}
	res, err := d.Store(ctx, sp, []store.Account{a, b, a})
	if err != nil || len(res) != 2 {
		t.Fatalf("Store: %+v %v", res, err)
	}
	f, err := st.OpenBlob(sp.Blob.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	all, _ := io.ReadAll(f)
	if !strings.HasPrefix(string(all), "Return-Path: <s@remote.example>\r\nReceived: by mx with ESMTP; ") {
		t.Fatalf("blob %q", all)
	}
	// All targets over quota: 452 4.2.2 and nothing kept.
	st.SetQuota(ctx, "alice@example.org", 1)
	sp2, err := d.Spool(ctx, hdr, strings.NewReader("Subject: 2\r\n\r\nbody\r\n"), 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Store(ctx, sp2, []store.Account{a}); !errors.As(err, &r) || r.Code != 452 || r.Enhanced != (smtp.EnhancedCode{4, 2, 2}) {
		t.Fatalf("over quota: %v", err)
	}
	if _, err := st.OpenBlob(sp2.Blob.ID); err == nil {
		t.Fatal("refused message's blob kept")
	}
}

// A large message is parsed from its file rather than from memory.
func TestSpoolLarge(t *testing.T) {
	_, d, _, _ := setup(t)
	body := "Subject: big\r\n\r\n" + strings.Repeat(strings.Repeat("y", 998)+"\r\n", 1500)
	sp, err := d.Spool(context.Background(), nil, strings.NewReader(body), 0)
	if err != nil || sp.Blob.Size != int64(len(body)) || sp.Parsed.Envelope.Subject != "big" {
		t.Fatalf("%+v %v", sp, err)
	}
}
