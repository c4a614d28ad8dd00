package sasl

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/xdg-go/scram"

	"github.com/tern-mail/tern/internal/account"
	"github.com/tern-mail/tern/internal/store"
)

// fakeAccounts is an Authenticator over a map of passwords.
type fakeAccounts struct {
	passwords map[string]string
	broken    bool
}

func newFake() *fakeAccounts {
	return &fakeAccounts{passwords: map[string]string{"alice@example.org": "secret pass", "bob@example.org": "hunter2"}}
}

func (f *fakeAccounts) acct(username string) (store.Account, string, error) {
	if f.broken {
		return store.Account{}, "", errors.New("database is locked")
	}
	u := strings.ToLower(username)
	p, ok := f.passwords[u]
	if !ok {
		return store.Account{}, "", fmt.Errorf("no such user: %w", account.ErrAuthFailed)
	}
	return store.Account{ID: int64(len(u)), Address: u}, p, nil
}

func (f *fakeAccounts) Authenticate(_ context.Context, username, password string) (store.Account, error) {
	a, p, err := f.acct(username)
	if err != nil {
		return a, err
	}
	if p != password {
		return store.Account{}, account.ErrAuthFailed
	}
	return a, nil
}

func (f *fakeAccounts) ScramSHA256(_ context.Context, username string) (store.Account, scram.StoredCredentials, error) {
	a, p, err := f.acct(username)
	if err != nil {
		return a, scram.StoredCredentials{}, err
	}
	c, err := scram.SHA256.NewClient(a.Address, p, "")
	if err != nil {
		return a, scram.StoredCredentials{}, err
	}
	return a, c.GetStoredCredentials(scram.KeyFactors{Salt: "0123456789abcdef", Iters: 4096}), nil
}

func TestPlain(t *testing.T) {
	ctx := context.Background()
	f := newFake()
	cases := []struct {
		name   string
		ir     bool
		msg    string
		want   error
		wantOK bool
	}{
		{"ir", true, "\x00alice@example.org\x00secret pass", nil, true},
		{"no-ir", false, "\x00alice@example.org\x00secret pass", nil, true},
		{"authzid-self", true, "Alice@Example.org\x00alice@example.org\x00secret pass", nil, true},
		{"authzid-other", true, "bob@example.org\x00alice@example.org\x00secret pass", ErrAuthFailed, false},
		{"wrong-pass", true, "\x00alice@example.org\x00nope", ErrAuthFailed, false},
		{"unknown", true, "\x00carol@example.org\x00x", ErrAuthFailed, false},
		{"malformed", true, "alice secret", ErrMalformed, false},
		{"empty-pass", true, "\x00alice@example.org\x00", ErrMalformed, false},
		{"empty-ir", true, "", ErrMalformed, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, err := NewServer("plain", ctx, f, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp := []byte(c.msg)
			if !c.ir {
				ch, done, err := s.Next(nil)
				if err != nil || done || len(ch) != 0 {
					t.Fatalf("first step: %q %v %v", ch, done, err)
				}
			}
			_, done, err := s.Next(resp)
			if !done || !errors.Is(err, c.want) || (c.want == nil && err != nil) {
				t.Fatalf("got done=%v err=%v, want %v", done, err, c.want)
			}
			if _, ok := s.Account(); ok != c.wantOK {
				t.Fatalf("Account ok=%v", ok)
			}
			if _, _, err := s.Next(nil); !errors.Is(err, ErrDone) {
				t.Fatalf("Next after done: %v", err)
			}
		})
	}
}

func TestLogin(t *testing.T) {
	ctx := context.Background()
	f := newFake()
	s, _ := NewServer(Login, ctx, f, nil)
	ch, done, err := s.Next(nil)
	if string(ch) != "Username:" || done || err != nil {
		t.Fatalf("%q %v %v", ch, done, err)
	}
	ch, done, err = s.Next([]byte("bob@example.org"))
	if string(ch) != "Password:" || done || err != nil {
		t.Fatalf("%q %v %v", ch, done, err)
	}
	if _, done, err = s.Next([]byte("hunter2")); !done || err != nil {
		t.Fatalf("%v %v", done, err)
	}
	if a, ok := s.Account(); !ok || a.Address != "bob@example.org" {
		t.Fatalf("account %v %v", a, ok)
	}
	// With the user name as initial response, and a wrong password.
	s, _ = NewServer(Login, ctx, f, nil)
	if ch, _, _ := s.Next([]byte("bob@example.org")); string(ch) != "Password:" {
		t.Fatalf("%q", ch)
	}
	if _, _, err := s.Next([]byte("x")); !errors.Is(err, ErrAuthFailed) {
		t.Fatal(err)
	}
	// A store failure is temporary, not an authentication failure.
	f.broken = true
	s, _ = NewServer(Login, ctx, f, nil)
	s.Next([]byte("bob@example.org"))
	if _, _, err := s.Next([]byte("hunter2")); !IsTemporary(err) {
		t.Fatalf("want temporary, got %v", err)
	}
}

func TestUnsupported(t *testing.T) {
	if _, err := NewServer("CRAM-MD5", context.Background(), newFake(), nil); !errors.Is(err, ErrUnsupported) {
		t.Fatal(err)
	}
	if _, err := NewServer(ScramSHA256Plus, context.Background(), newFake(), nil); !errors.Is(err, ErrUnsupported) {
		t.Fatal("PLUS without TLS:", err)
	}
	if m := Mechanisms(nil, false); strings.Join(m, " ") != "SCRAM-SHA-256" {
		t.Fatal(m)
	}
	if m := Mechanisms(nil, true); strings.Join(m, " ") != "SCRAM-SHA-256 PLAIN LOGIN" {
		t.Fatal(m)
	}
}

// runScram drives a server with an xdg-go/scram client conversation and
// returns the error of the first failing step.
func runScram(t *testing.T, s Server, conv *scram.ClientConversation) error {
	t.Helper()
	ch, done, err := s.Next(nil)
	if err != nil || done || len(ch) != 0 {
		t.Fatalf("start: %q %v %v", ch, done, err)
	}
	for i := 0; i < 5; i++ {
		resp, cerr := conv.Step(string(ch))
		if cerr != nil {
			return fmt.Errorf("client: %w", cerr)
		}
		ch, done, err = s.Next([]byte(resp))
		if err != nil {
			return err
		}
		if done {
			if !conv.Valid() {
				t.Fatal("server done but client did not validate the server")
			}
			return nil
		}
	}
	t.Fatal("exchange did not finish")
	return nil
}

func TestScramPlaintext(t *testing.T) {
	ctx := context.Background()
	f := newFake()
	for _, c := range []struct {
		user, pass string
		ok         bool
	}{{"alice@example.org", "secret pass", true}, {"alice@example.org", "wrong", false}, {"nobody@example.org", "x", false}} {
		cl, _ := scram.SHA256.NewClient(c.user, c.pass, "")
		s, _ := NewServer(ScramSHA256, ctx, f, nil)
		err := runScram(t, s, cl.NewConversation())
		if c.ok && err != nil || !c.ok && !errors.Is(err, ErrAuthFailed) {
			t.Fatalf("%s/%s: %v", c.user, c.pass, err)
		}
		if a, ok := s.Account(); ok != c.ok || ok && a.Address != c.user {
			t.Fatalf("account %v %v", a, ok)
		}
		if s.Username() != c.user {
			t.Fatalf("username %q", s.Username())
		}
	}
	// Authorization identity other than the user is refused.
	cl, _ := scram.SHA256.NewClient("alice@example.org", "secret pass", "bob@example.org")
	s, _ := NewServer(ScramSHA256, ctx, f, nil)
	if err := runScram(t, s, cl.NewConversation()); !errors.Is(err, ErrAuthFailed) {
		t.Fatal(err)
	}
	// Store failure during the credential look-up is temporary.
	f.broken = true
	cl, _ = scram.SHA256.NewClient("alice@example.org", "secret pass", "")
	s, _ = NewServer(ScramSHA256, ctx, f, nil)
	if err := runScram(t, s, cl.NewConversation()); !IsTemporary(err) {
		t.Fatal(err)
	}
}

func selfSigned(t testing.TB) (tls.Certificate, *x509.Certificate) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "mail.example.org"},
		DNSNames: []string{"mail.example.org"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, leaf
}

// tlsPair returns the server's and the client's connection states of a
// real TLS handshake over loopback TCP.
func tlsPair(t *testing.T, maxVersion uint16) (srv, cli tls.ConnectionState) {
	cert, leaf := selfSigned(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ch := make(chan tls.ConnectionState, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			ch <- tls.ConnectionState{}
			return
		}
		defer c.Close()
		tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{cert}, MaxVersion: maxVersion})
		_ = tc.Handshake()
		ch <- tc.ConnectionState()
	}()
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	c, err := tls.Dial("tcp", l.Addr().String(), &tls.Config{RootCAs: pool, ServerName: "mail.example.org", MaxVersion: maxVersion})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return <-ch, c.ConnectionState()
}

func TestScramPlus(t *testing.T) {
	ctx := context.Background()
	f := newFake()
	cl, _ := scram.SHA256.NewClient("alice@example.org", "secret pass", "")
	srv13, cli13 := tlsPair(t, tls.VersionTLS13)
	srv12, cli12 := tlsPair(t, tls.VersionTLS12)

	exp13, err := scram.NewTLSExporterBinding(&cli13)
	if err != nil {
		t.Fatal(err)
	}
	see13, err := scram.NewTLSServerEndpointBinding(&cli13)
	if err != nil {
		t.Fatal(err)
	}
	uniq12 := scram.NewTLSUniqueBinding(cli12.TLSUnique)
	if m := Mechanisms(&srv13, false); m[0] != ScramSHA256Plus {
		t.Fatalf("mechanisms on TLS 1.3: %v", m)
	}
	if m := Mechanisms(&srv12, false); m[0] != ScramSHA256Plus {
		t.Fatalf("mechanisms on TLS 1.2: %v", m)
	}
	// The server's own leaf, as the client saw it: a server-side
	// ConnectionState does not carry it.
	srvLeaf := cli13.PeerCertificates[0]

	cases := []struct {
		name string
		mech string
		srv  *tls.ConnectionState
		cert *x509.Certificate
		conv *scram.ClientConversation
		want error
	}{
		{"exporter-1.3", ScramSHA256Plus, &srv13, nil, cl.NewConversationWithChannelBinding(exp13), nil},
		{"server-end-point-1.3", ScramSHA256Plus, &srv13, srvLeaf, cl.NewConversationWithChannelBinding(see13), nil},
		{"server-end-point-no-cert", ScramSHA256Plus, &srv13, nil, cl.NewConversationWithChannelBinding(see13), ErrAuthFailed},
		{"unique-1.2", ScramSHA256Plus, &srv12, nil, cl.NewConversationWithChannelBinding(uniq12), nil},
		{"exporter-wrong-conn", ScramSHA256Plus, &srv12, nil, cl.NewConversationWithChannelBinding(exp13), ErrAuthFailed},
		{"plus-without-binding", ScramSHA256Plus, &srv13, nil, cl.NewConversation(), ErrAuthFailed},
		{"downgrade-y", ScramSHA256, &srv13, nil, cl.NewConversationAdvertisingChannelBinding(), ErrAuthFailed},
		{"plain-scram-on-tls", ScramSHA256, &srv13, nil, cl.NewConversation(), nil},
		{"p-on-non-plus", ScramSHA256, &srv13, nil, cl.NewConversationWithChannelBinding(exp13), ErrAuthFailed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, err := New(ctx, c.mech, Options{Accounts: f, TLS: c.srv, Certificate: c.cert})
			if err != nil {
				t.Fatal(err)
			}
			err = runScram(t, s, c.conv)
			if c.want == nil && err != nil || c.want != nil && !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
			if _, ok := s.Account(); ok != (c.want == nil) {
				t.Fatalf("Account ok=%v", ok)
			}
		})
	}
}

func TestGS2Header(t *testing.T) {
	for _, c := range []struct {
		in   string
		want GS2Header
		rest string
		bad  bool
	}{
		{"n,,n=user,r=abc", GS2Header{Flag: 'n'}, "n=user,r=abc", false},
		{"y,a=x=2Cy=3Dz,n=u,r=1", GS2Header{Flag: 'y', AuthzID: "x,y=z"}, "n=u,r=1", false},
		{"p=tls-exporter,,n=u,r=1", GS2Header{Flag: 'p', CBName: "tls-exporter"}, "n=u,r=1", false},
		{"p=,,n=u", GS2Header{}, "", true},
		{"q,,n=u", GS2Header{}, "", true},
		{"n,b=x,n=u", GS2Header{}, "", true},
		{"n,a=x=41,n=u", GS2Header{}, "", true},
		{"n", GS2Header{}, "", true},
		{"n,a=b", GS2Header{}, "", true},
	} {
		h, rest, err := ParseGS2Header(c.in)
		if c.bad {
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("%q: want ErrMalformed, got %v", c.in, err)
			}
			continue
		}
		if err != nil || h != c.want || rest != c.rest {
			t.Errorf("%q: got %+v %q %v", c.in, h, rest, err)
		}
	}
}
