package dns

import (
	"context"
	"errors"
	"io"
	"log"
	"net"
	"strings"
	"testing"

	"github.com/foxcpp/go-mockdns"
	mdns "github.com/miekg/dns"

	"github.com/tern-mail/tern/internal/dkim"
)

func server(t *testing.T, zones map[string]mockdns.Zone) *Resolver {
	t.Helper()
	srv, err := mockdns.NewServerWithLogger(zones, log.New(io.Discard, "", 0), false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	r, err := NewResolver(srv.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestMailHosts(t *testing.T) {
	r := server(t, map[string]mockdns.Zone{
		"mx.test.":       {MX: []net.MX{{Host: "b.mx.test.", Pref: 20}, {Host: "a.mx.test.", Pref: 10}}},
		"implicit.test.": {A: []string{"127.0.0.3"}, AAAA: []string{"::1"}},
		"null.test.":     {MX: []net.MX{{Host: ".", Pref: 0}}},
		"v6.test.":       {AAAA: []string{"::1"}},
		"fail.test.":     {Err: errors.New("boom")},
	})
	ctx := context.Background()
	mxs, err := r.MailHosts(ctx, "mx.test")
	if err != nil || len(mxs) != 2 || mxs[0].Host != "a.mx.test" {
		t.Fatalf("mx: %v %v", mxs, err)
	}
	mxs, err = r.MailHosts(ctx, "implicit.test")
	if err != nil || len(mxs) != 1 || mxs[0].Host != "implicit.test" {
		t.Fatalf("implicit: %v %v", mxs, err)
	}
	if _, err := r.MailHosts(ctx, "null.test"); !errors.Is(err, ErrNullMX) {
		t.Fatalf("null MX: %v", err)
	}
	if _, err := r.MailHosts(ctx, "nowhere.test"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("nxdomain: %v", err)
	}
	if _, err := r.MailHosts(ctx, "fail.test"); err == nil || errors.Is(err, ErrNotFound) {
		t.Fatalf("servfail must be temporary: %v", err)
	}
	ips, err := r.LookupIP(ctx, "implicit.test")
	if err != nil || len(ips) != 2 || ips[0].To4() == nil || ips[1].To4() != nil {
		t.Fatalf("ips %v %v", ips, err)
	}
	if ips, err := r.LookupIP(ctx, "v6.test"); err != nil || len(ips) != 1 {
		t.Fatalf("v6 %v %v", ips, err)
	}
}

func TestRecords(t *testing.T) {
	k := dkim.New(t.TempDir())
	if err := k.Ensure("example.org"); err != nil {
		t.Fatal(err)
	}
	keys, _ := k.Records("example.org")
	z := Zone(Records(RecordsOptions{Domain: "example.org", Hostname: "mail.example.org", IPv4: []string{"192.0.2.1"}, DKIM: keys, MTASTSID: "1"}))
	for _, want := range []string{"example.org.\t3600\tIN\tMX\t10 mail.example.org.", "v=spf1 mx -all", "._domainkey.example.org.", "k=ed25519", "k=rsa", "_dmarc.example.org.", "_mta-sts.example.org.\t3600\tIN\tTXT\t\"v=STSv1; id=1\"", "mta-sts.example.org.", "autoconfig.example.org.", "_submissions._tcp.example.org."} {
		if !strings.Contains(z, want) {
			t.Errorf("zone lacks %q:\n%s", want, z)
		}
	}
	// Each line must parse as a zone record (the RSA TXT is split).
	zp := mdns.NewZoneParser(strings.NewReader(z), "", "")
	n := 0
	for _, ok := zp.Next(); ok; _, ok = zp.Next() {
		n++
	}
	if err := zp.Err(); err != nil || n < 15 {
		t.Fatalf("zone parse: %v after %d records\n%s", err, n, z)
	}
}

// TestMailHostsDNSSEC: the AD bit of a validating upstream is reported,
// for an MX answer and for an implicit MX (RFC 8689 §4.2.1 needs it).
func TestMailHostsDNSSEC(t *testing.T) {
	r := server(t, map[string]mockdns.Zone{
		"signed.test.":      {AD: true, MX: []net.MX{{Host: "mx.signed.test.", Pref: 10}}},
		"unsigned.test.":    {MX: []net.MX{{Host: "mx.unsigned.test.", Pref: 10}}},
		"implicit.test.":    {AD: true, A: []string{"127.0.0.3"}},
		"implicit-no.test.": {A: []string{"127.0.0.3"}},
	})
	ctx := context.Background()
	for _, c := range []struct {
		domain string
		secure bool
	}{{"signed.test", true}, {"unsigned.test", false}, {"implicit.test", true}, {"implicit-no.test", false}} {
		mxs, secure, err := r.MailHostsDNSSEC(ctx, c.domain)
		if err != nil || len(mxs) != 1 || secure != c.secure {
			t.Errorf("%s: %v secure=%v err=%v, want secure=%v", c.domain, mxs, secure, err, c.secure)
		}
	}
}
