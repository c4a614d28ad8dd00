package dkim

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	msgdkim "github.com/emersion/go-msgauth/dkim"

	"github.com/tern-mail/tern/internal/testutil"
)

// Messages whose canonical forms are easy to get wrong (RFC 6376 §3.4).
var trickyMessages = map[string]string{
	"plain":          testMsg,
	"folded":         "From: Alice\r\n <alice@example.org>\r\nSubject:  a\r\n\t folded   subject  \r\nTo : bob@example.net\r\n\r\nbody\r\n",
	"bare LF":        "From: alice@example.org\nSubject: x\n\nline one\nline two\n",
	"white space":    "From: alice@example.org\r\n\r\n  leading\t\tand  inner  \r\ntrailing \t\r\n \t \r\n\r\nend",
	"empty body":     "From: alice@example.org\r\nSubject: x\r\n\r\n",
	"only blanks":    "From: alice@example.org\r\n\r\n\r\n\r\n  \r\n",
	"blank tail":     "From: alice@example.org\r\n\r\na\r\n\r\n\r\n\r\n",
	"two From":       "From: first@example.org\r\nSubject: s\r\nFrom: second@example.org\r\n\r\nx\r\n",
	"dots and CR":    "From: alice@example.org\r\n\r\n.leading dot\r\nlone\rCR \r\r\r\n..\r\n",
	"no final CRLF":  "From: alice@example.org\r\n\r\nlast line",
	"long line":      "From: alice@example.org\r\nSubject: " + strings.Repeat("word ", 4000) + "\r\n\r\n" + strings.Repeat("x", 70000) + "\r\n",
	"header folding": "From: alice@example.org\r\nReferences: <a@x>\r\n\t<b@x>\r\n\t<c@x>\r\nTo: a@x,\r\n b@x\r\n\r\nbody\r\n",
}

func testKeys(t testing.TB) *Keys {
	t.Helper()
	k := New(t.TempDir())
	k.RSABits = 1024
	k.Now = func() time.Time { return time.Unix(1795000000, 0) }
	if err := k.Ensure("example.org"); err != nil {
		t.Fatal(err)
	}
	return k
}

// TestSignVerifies: both signatures of every tricky message verify with
// go-msgauth, Sign and SignBytes agree, and the body hash is the one
// go-msgauth's own signer computes.
func TestSignVerifies(t *testing.T) {
	k := testKeys(t)
	lk := lookup(t, k, "example.org")
	for name, msg := range trickyMessages {
		checkSigned(t, k, lk, name, []byte(msg))
	}
}

// TestSignCorpus signs and verifies real messages of the corpus.
func TestSignCorpus(t *testing.T) {
	files := testutil.CorpusFiles(t)
	if testing.Short() && len(files) > 200 {
		files = files[:200]
	}
	k := testKeys(t)
	lk := lookup(t, k, "example.org")
	for i, f := range files {
		if i%7 != 0 { // a sample: every seventh message
			continue
		}
		msg, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		checkSigned(t, k, lk, f, msg)
	}
}

var bhRE = regexp.MustCompile(`bh=([A-Za-z0-9+/=]+)`)

func checkSigned(t *testing.T, k *Keys, lk func(string) ([]string, error), name string, msg []byte) {
	t.Helper()
	sig, err := k.Sign("example.org", bytes.NewReader(msg))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	sig2, err := k.SignBytes("example.org", msg)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	// RSA PKCS #1 v1.5 and Ed25519 are deterministic.
	if !bytes.Equal(sig, sig2) {
		t.Fatalf("%s: Sign and SignBytes differ:\n%s\n%s", name, sig, sig2)
	}
	vs, err := msgdkim.VerifyWithOptions(bytes.NewReader(append(sig, msg...)), &msgdkim.VerifyOptions{LookupTXT: lk})
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if len(vs) != 2 {
		t.Fatalf("%s: %d signatures", name, len(vs))
	}
	for _, v := range vs {
		if v.Err != nil {
			t.Fatalf("%s: %s: %v\n%s", name, v.Domain, v.Err, sig)
		}
	}
	ks, _ := k.activeSigners("example.org")
	s, err := msgdkim.NewSigner(&msgdkim.SignOptions{Domain: "example.org", Selector: ks[0].sel, Signer: ks[0].signer,
		HeaderCanonicalization: msgdkim.CanonicalizationRelaxed, BodyCanonicalization: msgdkim.CanonicalizationRelaxed})
	if err != nil {
		t.Fatal(err)
	}
	s.Write(msg)
	if err := s.Close(); err != nil {
		return // go-msgauth cannot parse it; verification above is what counts
	}
	want := bhRE.FindStringSubmatch(s.Signature())[1]
	if got := bhRE.FindStringSubmatch(string(sig))[1]; got != want {
		t.Fatalf("%s: body hash %s, go-msgauth %s", name, got, want)
	}
}

// FuzzBodyHash: the body hash does not depend on how the body is split
// into writes, and Sign and SignBytes see the same header fields.
func FuzzBodyHash(f *testing.F) {
	for _, m := range trickyMessages {
		f.Add([]byte(m), uint8(3))
	}
	f.Add([]byte("From: alice@example.org\r\nSubject: no body\r\n"), uint8(1))
	f.Fuzz(func(t *testing.T, msg []byte, split uint8) {
		whole := newBodyHasher()
		whole.Write(msg)
		parts := newBodyHasher()
		n := int(split%16) + 1
		for p := msg; len(p) > 0; {
			m := min(n, len(p))
			parts.Write(p[:m])
			p = p[m:]
		}
		if a, b := whole.sum(), parts.sum(); !bytes.Equal(a, b) {
			t.Fatalf("split writes change the hash: %s vs %s", base64.StdEncoding.EncodeToString(a), base64.StdEncoding.EncodeToString(b))
		}
		// What Sign reads as the header is what SignBytes cuts off.
		hdr, err := readHeader(bufio.NewReaderSize(bytes.NewReader(msg), 16))
		hn := headerLen(msg)
		if err == nil && string(canonicalHeaders(hdr, signedHeaders)) != string(canonicalHeaders(msg[:hn], signedHeaders)) {
			t.Fatalf("header sections differ: %q vs %q", hdr, msg[:hn])
		}
	})
}
