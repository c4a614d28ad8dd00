package dkim

import (
	"bufio"
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"io"
	"strconv"
	"strings"
)

// The signer below computes what both signatures share once: the relaxed
// body hash (RFC 6376 §3.4.4, §3.7) and the canonicalized header fields
// (§3.4.2, §5.4.2). Each key then only hashes a few hundred bytes and
// signs; crypto/rsa and crypto/ed25519 do the signing.

// maxHeader caps the header section read from a message being signed.
const maxHeader = 256 << 10

// ErrHeaderTooLong is returned for a message whose header section
// exceeds maxHeader.
var ErrHeaderTooLong = errors.New("dkim: header section too long")

// Sign reads msg once and returns the DKIM-Signature header fields, one per
// active key (Ed25519 and RSA), to prepend to the message.
func (k *Keys) Sign(domain string, msg io.Reader) ([]byte, error) {
	ks, err := k.activeSigners(domain)
	if err != nil {
		return nil, err
	}
	br := bufio.NewReaderSize(msg, 16<<10)
	hdr, err := readHeader(br)
	if err != nil {
		return nil, err
	}
	bh := newBodyHasher()
	if _, err := br.WriteTo(bh); err != nil {
		return nil, fmt.Errorf("dkim: sign: %w", err)
	}
	return k.signatures(domain, ks, hdr, bh.sum())
}

// SignBytes is Sign for a message in memory; it makes no copy of it.
func (k *Keys) SignBytes(domain string, msg []byte) ([]byte, error) {
	ks, err := k.activeSigners(domain)
	if err != nil {
		return nil, err
	}
	n := headerLen(msg)
	if n > maxHeader {
		return nil, ErrHeaderTooLong
	}
	bh := newBodyHasher()
	bh.Write(msg[n:])
	return k.signatures(domain, ks, msg[:n], bh.sum())
}

// signatures signs the canonical header fields and body hash with every
// key and formats the DKIM-Signature fields.
func (k *Keys) signatures(domain string, ks []loadedKey, hdr []byte, bodyHash []byte) ([]byte, error) {
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	canon := canonicalHeaders(hdr, signedHeaders)
	t := k.Now().Unix()
	bh := base64.StdEncoding.EncodeToString(bodyHash)
	var out []byte
	for _, lk := range ks {
		f, err := signOne(lk, domain, t, bh, canon)
		if err != nil {
			return nil, err
		}
		out = append(out, f...)
	}
	return out, nil
}

// signOne builds one DKIM-Signature field (RFC 6376 §3.5) and signs it.
func signOne(lk loadedKey, domain string, t int64, bh string, canon []byte) ([]byte, error) {
	alg, hashAlg := "rsa-sha256", crypto.SHA256
	if _, ok := lk.signer.Public().(ed25519.PublicKey); ok {
		// RFC 8463 §3: Ed25519 signs the SHA-256 hash (PureEdDSA).
		alg, hashAlg = "ed25519-sha256", crypto.Hash(0)
	}
	var f strings.Builder
	f.WriteString("DKIM-Signature: v=1; a=" + alg + "; c=relaxed/relaxed; d=" + domain +
		"; s=" + lk.sel + "; t=" + strconv.FormatInt(t, 10) + ";\r\n\th=" + strings.Join(signedHeaders, ":") +
		";\r\n\tbh=" + bh + ";\r\n\tb=")
	// RFC 6376 §3.7: the header hash covers the signed fields, then this
	// field with an empty b= and without its final CRLF, canonicalized.
	h := sha256.New()
	h.Write(canon)
	h.Write(relaxedHeader(nil, []byte(f.String())))
	digest := h.Sum(nil)
	sig, err := lk.signer.Sign(rand.Reader, digest, hashAlg)
	if err != nil {
		return nil, fmt.Errorf("dkim: sign with %s: %w", lk.sel, err)
	}
	b64 := base64.StdEncoding.EncodeToString(sig)
	for len(b64) > 72 {
		f.WriteString(b64[:72] + "\r\n\t  ")
		b64 = b64[72:]
	}
	f.WriteString(b64 + "\r\n")
	return []byte(f.String()), nil
}

// readHeader returns the header section, its final empty line excluded.
func readHeader(br *bufio.Reader) ([]byte, error) {
	var hdr []byte
	bol := true // at the beginning of a line
	for {
		line, err := br.ReadSlice('\n')
		if len(hdr)+len(line) > maxHeader {
			return nil, ErrHeaderTooLong
		}
		if bol && err == nil && (len(line) == 1 || len(line) == 2 && line[0] == '\r') {
			return hdr, nil
		}
		bol = err == nil
		hdr = append(hdr, line...)
		switch {
		case err == io.EOF:
			return hdr, nil
		case err != nil && err != bufio.ErrBufferFull:
			return nil, fmt.Errorf("dkim: sign: %w", err)
		}
	}
}

// headerLen is the length of the header section including the empty line
// that ends it (the whole message when there is none).
func headerLen(msg []byte) int {
	for i := 0; i < len(msg); {
		j := bytes.IndexByte(msg[i:], '\n')
		if j < 0 {
			return len(msg)
		}
		line := msg[i : i+j+1]
		if len(line) == 1 || len(line) == 2 && line[0] == '\r' {
			return i + len(line)
		}
		i += j + 1
	}
	return len(msg)
}

// headerFields splits a header section into fields, folded lines joined.
func headerFields(hdr []byte) [][]byte {
	var fields [][]byte
	for len(hdr) > 0 {
		end := 0
		for {
			j := bytes.IndexByte(hdr[end:], '\n')
			if j < 0 {
				end = len(hdr)
				break
			}
			end += j + 1
			if end >= len(hdr) || (hdr[end] != ' ' && hdr[end] != '\t') {
				break
			}
		}
		fields = append(fields, hdr[:end])
		hdr = hdr[end:]
	}
	return fields
}

// canonicalHeaders returns the relaxed canonical form of the fields
// named, in order; a name listed several times takes the instances from
// the bottom up and a name without (more) instances adds nothing
// (RFC 6376 §5.4.2).
func canonicalHeaders(hdr []byte, names []string) []byte {
	fields := headerFields(hdr)
	used := make([]bool, len(fields))
	var out []byte
	for _, name := range names {
		for i := len(fields) - 1; i >= 0; i-- {
			if used[i] {
				continue
			}
			n, _, ok := bytes.Cut(fields[i], []byte(":"))
			if ok && strings.EqualFold(string(bytes.TrimRight(n, " \t")), name) {
				used[i] = true
				out = relaxedHeader(out, fields[i])
				out = append(out, '\r', '\n')
				break
			}
		}
	}
	return out
}

// relaxedHeader appends the relaxed canonical form of one field without
// its CRLF (RFC 6376 §3.4.2): name lower-cased, line breaks removed,
// white space runs made one space, none around the colon or at the end.
func relaxedHeader(dst, field []byte) []byte {
	name, value, _ := bytes.Cut(field, []byte(":"))
	dst = append(dst, bytes.ToLower(bytes.TrimRight(name, " \t\r\n"))...)
	dst = append(dst, ':')
	space := false
	start := len(dst)
	for _, c := range value {
		switch c {
		case ' ', '\t', '\r', '\n':
			space = true
		default:
			if space && len(dst) > start {
				dst = append(dst, ' ')
			}
			space = false
			dst = append(dst, c)
		}
	}
	return dst
}

// bodyHasher hashes a body in relaxed canonical form (RFC 6376 §3.4.4) as
// it is written: white space runs become one space, white space at line
// ends goes, line breaks at the end go, and a body with content ends in
// CRLF. A lone LF counts as CRLF (the message is sent with CRLF line
// ends). A lone CR is kept as a line break byte, as go-msgauth's verifier
// does, so that messages with stray CRs still verify there.
type bodyHasher struct {
	h       hash.Hash
	buf     []byte // canonical output not yet hashed
	pend    []byte // line break bytes not yet known to be followed by content
	space   bool   // white space seen since the last content or line break
	cr      bool   // the last byte was a CR
	written bool   // some content was written
}

func newBodyHasher() *bodyHasher {
	return &bodyHasher{h: sha256.New(), buf: make([]byte, 0, 8<<10)}
}

func (b *bodyHasher) Write(p []byte) (int, error) {
	for _, c := range p {
		prevCR := b.cr
		b.cr = c == '\r'
		switch c {
		case ' ', '\t':
			b.space = true
		case '\n':
			if !prevCR {
				b.pend = append(b.pend, '\r')
			}
			fallthrough
		case '\r':
			b.space = false
			b.pend = append(b.pend, c)
		default:
			if len(b.pend) > 0 {
				b.buf = append(b.buf, b.pend...)
				b.pend = b.pend[:0]
			}
			if b.space {
				b.buf = append(b.buf, ' ')
				b.space = false
			}
			b.buf = append(b.buf, c)
			b.written = true
			if len(b.buf) >= 8<<10 {
				b.h.Write(b.buf)
				b.buf = b.buf[:0]
			}
		}
	}
	return len(p), nil
}

// sum ends the body and returns its hash.
func (b *bodyHasher) sum() []byte {
	if b.written {
		b.buf = append(b.buf, '\r', '\n')
	}
	b.h.Write(b.buf)
	return b.h.Sum(nil)
}
