package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
)

func TestSelfSignedReload(t *testing.T) {
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "tls", "cert.pem"), filepath.Join(dir, "tls", "key.pem")
	if err := SelfSigned(cert, key, "mail.example.test", "127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	r, err := NewReloader(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	l, err := tls.Listen("tcp", "127.0.0.1:0", r.Config())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	pool := x509.NewCertPool()
	pem, _ := os.ReadFile(cert)
	pool.AppendCertsFromPEM(pem)
	dial := func() *x509.Certificate {
		c, err := tls.Dial("tcp", l.Addr().String(), &tls.Config{RootCAs: pool, ServerName: "mail.example.test"})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0]
	}
	first := dial()
	if err := SelfSigned(cert, key, "mail.example.test"); err != nil {
		t.Fatal(err)
	}
	pem, _ = os.ReadFile(cert)
	pool.AppendCertsFromPEM(pem)
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	if second := dial(); second.SerialNumber.Cmp(first.SerialNumber) == 0 {
		t.Error("certificate not reloaded")
	}
	os.WriteFile(cert, []byte("junk"), 0o600)
	if err := r.Reload(); err == nil {
		t.Error("reload of junk succeeded")
	}
	dial() // the old certificate still serves
}
