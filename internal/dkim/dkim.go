// Package dkim owns the DKIM keys of tern's domains (RFC 6376, RFC 8463):
// generating an Ed25519 and an RSA-2048 key per domain, storing them in the
// data directory, rotating selectors, producing the DNS TXT records to
// publish, and signing outgoing messages with both keys (sign.go: the body
// hash and header canonicalization computed once for both, the signing
// itself by crypto/rsa and crypto/ed25519). Files live under DATA/dkim/DOMAIN/:
// one PEM file per selector and a manifest.json naming the selectors in use.
// It never looks anything up in DNS.
package dkim

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Algorithms of the keys kept per domain.
const (
	AlgEd25519 = "ed25519"
	AlgRSA     = "rsa"
)

// ErrNoKeys is returned by Sign and Records for a domain without keys.
var ErrNoKeys = errors.New("dkim: no keys for domain")

// Selector is one key in a domain's manifest.
type Selector struct {
	Name    string    `json:"name"`
	Alg     string    `json:"alg"`
	Created time.Time `json:"created"`
	// Active keys sign; inactive ones stay published so that mail signed
	// before a rotation still verifies.
	Active bool `json:"active"`
}

type manifest struct {
	Selectors []Selector `json:"selectors"`
}

// Keys manages the keys under one data directory. It is safe for
// concurrent use; loaded signing keys are cached.
type Keys struct {
	dir string
	// RSABits is the RSA key size (2048; tests may lower it).
	RSABits int
	Now     func() time.Time

	mu      sync.Mutex
	signers map[string]cachedKeys // by domain
}

// cachedKeys are a domain's loaded signing keys and the manifest they
// came from: a `tern dkim rotate` in another process replaces the
// manifest (a new file, renamed into place), which a running server
// notices on its next signature.
type cachedKeys struct {
	manifest os.FileInfo
	keys     []loadedKey
}

type loadedKey struct {
	sel    string
	signer crypto.Signer
}

// New returns the key manager for dataDir (keys in dataDir/dkim).
func New(dataDir string) *Keys {
	return &Keys{dir: filepath.Join(dataDir, "dkim"), RSABits: 2048, Now: time.Now, signers: map[string]cachedKeys{}}
}

func (k *Keys) domainDir(domain string) (string, error) {
	d := strings.ToLower(strings.TrimSuffix(strings.TrimSpace(domain), "."))
	if d == "" || strings.ContainsAny(d, `/\`) || strings.HasPrefix(d, ".") {
		return "", fmt.Errorf("dkim: invalid domain %q", domain)
	}
	return filepath.Join(k.dir, d), nil
}

func (k *Keys) readManifest(dir string) (*manifest, error) {
	b, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if errors.Is(err, os.ErrNotExist) {
		return &manifest{}, nil
	}
	if err != nil {
		return nil, err
	}
	var m manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("dkim: manifest %s: %w", dir, err)
	}
	return &m, nil
}

// Selectors lists a domain's selectors, active and retired.
func (k *Keys) Selectors(domain string) ([]Selector, error) {
	dir, err := k.domainDir(domain)
	if err != nil {
		return nil, err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	m, err := k.readManifest(dir)
	if err != nil {
		return nil, err
	}
	return m.Selectors, nil
}

// Ensure creates an Ed25519 and an RSA key for domain unless it has active
// keys already.
func (k *Keys) Ensure(domain string) error {
	dir, err := k.domainDir(domain)
	if err != nil {
		return err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	m, err := k.readManifest(dir)
	if err != nil {
		return err
	}
	for _, s := range m.Selectors {
		if s.Active {
			return nil
		}
	}
	return k.addKeys(dir, m)
}

// Rotate adds a new pair of selectors and retires the current ones; the
// retired keys stay published (Records) but no longer sign. It returns the
// new selector names.
func (k *Keys) Rotate(domain string) ([]string, error) {
	dir, err := k.domainDir(domain)
	if err != nil {
		return nil, err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	m, err := k.readManifest(dir)
	if err != nil {
		return nil, err
	}
	for i := range m.Selectors {
		m.Selectors[i].Active = false
	}
	if err := k.addKeys(dir, m); err != nil {
		return nil, err
	}
	var names []string
	for _, s := range m.Selectors {
		if s.Active {
			names = append(names, s.Name)
		}
	}
	delete(k.signers, filepath.Base(dir))
	return names, nil
}

// addKeys generates the two keys, writes them and then the manifest, each
// durably (temp file, fsync, rename, fsync directory).
func (k *Keys) addKeys(dir string, m *manifest) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	now := k.Now().UTC()
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, k.RSABits)
	if err != nil {
		return err
	}
	for _, nk := range []struct {
		alg string
		key crypto.Signer
	}{{AlgEd25519, edKey}, {AlgRSA, rsaKey}} {
		name := freeName(m, nk.alg, now)
		der, err := x509.MarshalPKCS8PrivateKey(nk.key)
		if err != nil {
			return err
		}
		pemBytes := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
		if err := writeFileSync(filepath.Join(dir, name+".key"), pemBytes, 0o600); err != nil {
			return err
		}
		m.Selectors = append(m.Selectors, Selector{Name: name, Alg: nk.alg, Created: now, Active: true})
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return writeFileSync(filepath.Join(dir, "manifest.json"), b, 0o600)
}

// freeName picks a selector name like "e20261122" (ed25519) or "r20261122"
// (RSA), with a suffix when that day's name is taken.
func freeName(m *manifest, alg string, now time.Time) string {
	base := "r" + now.Format("20060102")
	if alg == AlgEd25519 {
		base = "e" + now.Format("20060102")
	}
	taken := func(n string) bool {
		for _, s := range m.Selectors {
			if s.Name == n {
				return true
			}
		}
		return false
	}
	name := base
	for i := 2; taken(name); i++ {
		name = fmt.Sprintf("%s-%d", base, i)
	}
	return name
}

func writeFileSync(path string, data []byte, perm os.FileMode) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func loadKey(path string) (crypto.Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("dkim: %s: no PEM block", path)
	}
	key, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("dkim: %s: %w", path, err)
	}
	s, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("dkim: %s: not a signing key", path)
	}
	return s, nil
}

// Record is one DNS TXT record to publish.
type Record struct {
	Name  string // e.g. "e20261122._domainkey.example.org"
	Value string // e.g. "v=DKIM1; k=ed25519; p=..."
}

// Records returns the TXT records of every selector of domain, active and
// retired (RFC 6376 §3.6.1; RFC 8463 §4 for k=ed25519).
func (k *Keys) Records(domain string) ([]Record, error) {
	dir, err := k.domainDir(domain)
	if err != nil {
		return nil, err
	}
	k.mu.Lock()
	m, err := k.readManifest(dir)
	k.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if len(m.Selectors) == 0 {
		return nil, fmt.Errorf("%w %s", ErrNoKeys, domain)
	}
	var recs []Record
	for _, s := range m.Selectors {
		key, err := loadKey(filepath.Join(dir, s.Name+".key"))
		if err != nil {
			return nil, err
		}
		var p []byte
		switch pub := key.Public().(type) {
		case ed25519.PublicKey:
			p = pub
		case *rsa.PublicKey:
			if p, err = x509.MarshalPKIXPublicKey(pub); err != nil {
				return nil, err
			}
		}
		recs = append(recs, Record{
			Name:  s.Name + "._domainkey." + filepath.Base(dir),
			Value: fmt.Sprintf("v=DKIM1; k=%s; p=%s", s.Alg, base64.StdEncoding.EncodeToString(p)),
		})
	}
	return recs, nil
}

// activeSigners returns the cached signing keys of a domain.
func (k *Keys) activeSigners(domain string) ([]loadedKey, error) {
	dir, err := k.domainDir(domain)
	if err != nil {
		return nil, err
	}
	name := filepath.Base(dir)
	k.mu.Lock()
	defer k.mu.Unlock()
	fi, err := os.Stat(filepath.Join(dir, "manifest.json"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	if c, ok := k.signers[name]; ok && fi != nil && os.SameFile(c.manifest, fi) && c.manifest.ModTime().Equal(fi.ModTime()) {
		return c.keys, nil
	}
	m, err := k.readManifest(dir)
	if err != nil {
		return nil, err
	}
	var ks []loadedKey
	for _, s := range m.Selectors {
		if !s.Active {
			continue
		}
		key, err := loadKey(filepath.Join(dir, s.Name+".key"))
		if err != nil {
			return nil, err
		}
		ks = append(ks, loadedKey{sel: s.Name, signer: key})
	}
	if len(ks) == 0 {
		return nil, fmt.Errorf("%w %s", ErrNoKeys, domain)
	}
	k.signers[name] = cachedKeys{manifest: fi, keys: ks}
	return ks, nil
}

// signedHeaders are the fields signed (RFC 6376 §5.4.1); From is listed
// twice so that a second From cannot be added after signing (§8.15).
var signedHeaders = []string{
	"From", "From", "Reply-To", "Subject", "Date", "To", "Cc", "Message-ID",
	"In-Reply-To", "References", "MIME-Version", "Content-Type",
	"Content-Transfer-Encoding", "Content-Disposition", "List-Unsubscribe",
}

// SignedHeaders returns the header field names tern signs, in h= order.
func SignedHeaders() []string { return append([]string(nil), signedHeaders...) }
