package dkim

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	msgdkim "github.com/emersion/go-msgauth/dkim"

	"github.com/tern-mail/tern/internal/testutil"
)

const testMsg = "From: Alice <alice@example.org>\r\nTo: bob@example.net\r\nSubject: hello\r\nDate: Sun, 22 Nov 2026 10:00:00 +0000\r\nMessage-ID: <1@example.org>\r\n\r\nHello Bob.\r\n"

func lookup(t *testing.T, k *Keys, domain string) func(string) ([]string, error) {
	recs, err := k.Records(domain)
	if err != nil {
		t.Fatal(err)
	}
	return func(name string) ([]string, error) {
		for _, r := range recs {
			if r.Name == name {
				return []string{r.Value}, nil
			}
		}
		return nil, errors.New("no such record " + name)
	}
}

func verify(t *testing.T, msg []byte, lk func(string) ([]string, error)) []*msgdkim.Verification {
	t.Helper()
	vs, err := msgdkim.VerifyWithOptions(bytes.NewReader(msg), &msgdkim.VerifyOptions{LookupTXT: lk})
	if err != nil {
		t.Fatal(err)
	}
	return vs
}

func TestEnsureSignVerifyRotate(t *testing.T) {
	dir := t.TempDir()
	k := New(dir)
	if _, err := k.Sign("example.org", strings.NewReader(testMsg)); !errors.Is(err, ErrNoKeys) {
		t.Fatalf("sign without keys: %v", err)
	}
	if err := k.Ensure("example.org"); err != nil {
		t.Fatal(err)
	}
	if err := k.Ensure("Example.org."); err != nil { // idempotent
		t.Fatal(err)
	}
	sels, _ := k.Selectors("example.org")
	if len(sels) != 2 {
		t.Fatalf("selectors %+v", sels)
	}
	hdr, err := k.Sign("example.org", strings.NewReader(testMsg))
	if err != nil {
		t.Fatal(err)
	}
	signed := append(hdr, testMsg...)
	vs := verify(t, signed, lookup(t, k, "example.org"))
	if len(vs) != 2 {
		t.Fatalf("want 2 signatures, got %d", len(vs))
	}
	for _, v := range vs {
		if v.Err != nil {
			t.Fatalf("verify %s: %v", v.Domain, v.Err)
		}
	}

	// Rotation: new selectors sign, the old ones still verify old mail.
	k2 := New(dir)
	k2.Now = func() time.Time { return time.Now() }
	newSels, err := k2.Rotate("example.org")
	if err != nil {
		t.Fatal(err)
	}
	if len(newSels) != 2 || newSels[0] == sels[0].Name {
		t.Fatalf("rotate: %v (old %v)", newSels, sels)
	}
	recs, _ := k2.Records("example.org")
	if len(recs) != 4 {
		t.Fatalf("want 4 published records, got %d", len(recs))
	}
	for _, v := range verify(t, signed, lookup(t, k2, "example.org")) {
		if v.Err != nil {
			t.Fatalf("old signature after rotation: %v", v.Err)
		}
	}
	hdr2, err := k2.Sign("example.org", strings.NewReader(testMsg))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range newSels {
		if !bytes.Contains(hdr2, []byte("s="+s+";")) {
			t.Fatalf("new signature not using %s: %s", s, hdr2)
		}
	}
	for _, v := range verify(t, append(hdr2, testMsg...), lookup(t, k2, "example.org")) {
		if v.Err != nil {
			t.Fatal(v.Err)
		}
	}

	// The first manager (a running server, which signed and cached its
	// keys before the rotation) signs with the new selectors too.
	hdr3, err := k.Sign("example.org", strings.NewReader(testMsg))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range newSels {
		if !bytes.Contains(hdr3, []byte("s="+s+";")) {
			t.Fatalf("running signer missed the rotation to %s: %s", s, hdr3)
		}
	}
	for _, s := range sels {
		if bytes.Contains(hdr3, []byte("s="+s.Name+";")) {
			t.Fatalf("running signer still uses retired %s", s.Name)
		}
	}
}

// TestInteropDkimverify checks both signatures with Debian's python3-dkim.
func TestInteropDkimverify(t *testing.T) {
	prog := testutil.NeedProgram(t, "dkimverify")
	dir := t.TempDir()
	k := New(dir)
	if err := k.Ensure("example.org"); err != nil {
		t.Fatal(err)
	}
	hdr, err := k.Sign("example.org", strings.NewReader(testMsg))
	if err != nil {
		t.Fatal(err)
	}
	recs, _ := k.Records("example.org")
	// dkimverify looks keys up through dnspython; feed them with a tiny
	// wrapper that replaces dkim's DNS function (no network).
	py := filepath.Join(t.TempDir(), "verify.py")
	var script strings.Builder
	script.WriteString("import sys, dkim\nrecs = {\n")
	for _, r := range recs {
		script.WriteString("  b'" + r.Name + ".': b'" + r.Value + "',\n")
	}
	script.WriteString("}\ndef dnsfunc(name, timeout=5):\n  return recs.get(name, b'')\n")
	script.WriteString("msg = sys.stdin.buffer.read()\nd = dkim.DKIM(msg)\nok = [d.verify(idx=i, dnsfunc=dnsfunc) for i in range(2)]\nprint(ok)\nsys.exit(0 if all(ok) else 1)\n")
	if err := os.WriteFile(py, []byte(script.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	// Run the interpreter named in dkimverify's #! line, which has the
	// dkim module installed.
	interp := "python3"
	if b, err := os.ReadFile(prog); err == nil && strings.HasPrefix(string(b), "#!") {
		interp = strings.Fields(strings.SplitN(string(b[2:]), "\n", 2)[0])[0]
	}
	cmd := exec.Command(interp, py)
	cmd.Stdin = bytes.NewReader(append(hdr, testMsg...))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("python3-dkim verification failed: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "[True, True]") {
		t.Fatalf("unexpected output %s", out)
	}
}
