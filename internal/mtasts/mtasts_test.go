package mtasts

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"sync/atomic"
	"testing"
	"time"
)

func TestParsePolicy(t *testing.T) {
	p, err := ParsePolicy([]byte("version: STSv1\r\nmode: enforce\r\nmx: mail.example.org\r\nmx: *.example.net\r\nmax_age: 86400\r\nextra: ignored\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	if p.Mode != ModeEnforce || len(p.MX) != 2 || p.MaxAge != 24*time.Hour {
		t.Fatalf("%+v", p)
	}
	for host, want := range map[string]bool{"mail.example.org": true, "MAIL.example.org.": true, "a.example.net": true, "a.b.example.net": false, "example.net": false, "other.org": false} {
		if got := p.Matches(host); got != want {
			t.Errorf("Matches(%q) = %v", host, got)
		}
	}
	for _, bad := range []string{"", "version: STSv1\nmode: enforce\nmax_age: 1\n", "version: STSv2\nmode: none\nmax_age: 1\n", "version: STSv1\nmode: x\nmax_age: 1\n", "version: STSv1\nmode: none\nmax_age: -1\n"} {
		if _, err := ParsePolicy([]byte(bad)); !errors.Is(err, ErrSyntax) {
			t.Errorf("accepted %q", bad)
		}
	}
}

func TestParseRecord(t *testing.T) {
	if id, err := ParseRecord("v=STSv1; id=bad-id!;"); err == nil || id != "" {
		t.Fatalf("bad id accepted: %q", id)
	}
	if id, err := ParseRecord("v=STSv1; id=2026112201"); err != nil || id != "2026112201" {
		t.Fatal(id, err)
	}
}

type txtMap map[string][]string

func (m txtMap) LookupTXT(_ context.Context, name string) ([]string, error) {
	if v, ok := m[name]; ok {
		return v, nil
	}
	return nil, errors.New("not found")
}

func TestFetcherCache(t *testing.T) {
	var hits atomic.Int32
	body := "version: STSv1\nmode: enforce\nmx: mx.example.org\nmax_age: 3600\n"
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if r.URL.Path != "/.well-known/mta-sts.txt" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprint(w, body)
	}))
	defer srv.Close()
	txt := txtMap{"_mta-sts.example.org": {"v=STSv1; id=1"}}
	now := time.Now()
	f := &Fetcher{Resolver: txt, Client: srv.Client(), URL: func(string) string { return srv.URL + "/.well-known/mta-sts.txt" }, Now: func() time.Time { return now }}
	ctx := context.Background()
	p, err := f.Policy(ctx, "example.org")
	if err != nil || p == nil || p.Mode != ModeEnforce {
		t.Fatal(p, err)
	}
	f.Policy(ctx, "example.org")
	if hits.Load() != 1 {
		t.Fatalf("cache miss: %d fetches", hits.Load())
	}
	// The record disappears (an attacker strips it): the cache holds.
	delete(txt, "_mta-sts.example.org")
	if p, _ := f.Policy(ctx, "example.org"); p == nil {
		t.Fatal("cached policy lost when the TXT record vanished")
	}
	// After max_age without a record: no policy.
	now = now.Add(2 * time.Hour)
	if p, _ := f.Policy(ctx, "example.org"); p != nil {
		t.Fatal("expired policy still used")
	}
	// A domain without a record has no policy.
	if p, err := f.Policy(ctx, "none.example"); p != nil || err != nil {
		t.Fatal(p, err)
	}
	// A new id triggers a refetch.
	txt["_mta-sts.example.org"] = []string{"v=STSv1; id=2"}
	body = "version: STSv1\nmode: testing\nmx: mx.example.org\nmax_age: 3600\n"
	if p, _ := f.Policy(ctx, "example.org"); p == nil || p.Mode != ModeTesting {
		t.Fatalf("refetch: %+v", p)
	}
}

// memCache is a PolicyCache in memory, standing for the store.
type memCache map[string]struct {
	id, text string
	expires  time.Time
}

func (m memCache) LoadPolicy(_ context.Context, domain string) (string, string, time.Time, bool, error) {
	e, ok := m[domain]
	return e.id, e.text, e.expires, ok, nil
}

func (m memCache) SavePolicy(_ context.Context, domain, id, text string, expires time.Time) error {
	m[domain] = struct {
		id, text string
		expires  time.Time
	}{id, text, expires}
	return nil
}

// A policy fetched before a restart still protects the domain after it,
// when the record is stripped and the policy server unreachable.
func TestFetcherDurableCache(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "version: STSv1\nmode: enforce\nmx: *.example.org\nmax_age: 86400\n")
	}))
	txt := txtMap{"_mta-sts.example.org": {"v=STSv1; id=7"}}
	cache := memCache{}
	url := func(string) string { return srv.URL + "/.well-known/mta-sts.txt" }
	ctx := context.Background()
	before := &Fetcher{Resolver: txt, Client: srv.Client(), URL: url, Cache: cache}
	if p, err := before.Policy(ctx, "Example.org."); err != nil || p == nil {
		t.Fatal(p, err)
	}
	if cache["example.org"].id != "7" {
		t.Fatalf("not saved: %+v", cache)
	}
	srv.Close()
	delete(txt, "_mta-sts.example.org")
	after := &Fetcher{Resolver: txt, Client: srv.Client(), URL: url, Cache: cache}
	p, err := after.Policy(ctx, "example.org")
	if err != nil || p == nil || p.Mode != ModeEnforce || !p.Matches("mx1.example.org") {
		t.Fatalf("after a restart: %+v %v", p, err)
	}
	// An expired durable entry does not count.
	e := cache["example.org"]
	e.expires = time.Now().Add(-time.Minute)
	cache["example.org"] = e
	if p, _ := (&Fetcher{Resolver: txt, Client: srv.Client(), URL: url, Cache: cache}).Policy(ctx, "example.org"); p != nil {
		t.Fatalf("expired cached policy used: %+v", p)
	}
}

func FuzzParsePolicy(f *testing.F) {
	f.Add([]byte("version: STSv1\nmode: enforce\nmx: a.b\nmax_age: 5\n"))
	f.Add([]byte("version: STSv1\r\nmode: none\r\nmax_age: 99999999999\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ParsePolicy(b)
		if err != nil {
			return
		}
		q, err := ParsePolicy([]byte(p.String()))
		if err != nil || !reflect.DeepEqual(p, q) {
			t.Fatalf("round trip %q: %v %+v %+v", b, err, p, q)
		}
	})
}
