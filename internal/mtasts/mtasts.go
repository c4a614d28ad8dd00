// Package mtasts implements SMTP MTA Strict Transport Security (RFC 8461)
// for the sending side: parsing the _mta-sts TXT record and the policy
// file, matching MX hosts against the policy, and a Fetcher that fetches
// policies over HTTPS (with an injectable client, so tests serve policies
// on loopback) and caches them. Parsing is pure and fuzzed.
package mtasts

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Modes of RFC 8461 §3.2.
const (
	ModeEnforce = "enforce"
	ModeTesting = "testing"
	ModeNone    = "none"
)

// Policy is a parsed policy file.
type Policy struct {
	Mode   string
	MX     []string
	MaxAge time.Duration
}

// ErrSyntax is returned for an invalid record or policy.
var ErrSyntax = errors.New("mtasts: invalid syntax")

// maxMaxAge is RFC 8461 §3.2's upper bound (one year).
const maxMaxAge = 31557600 * time.Second

// ParseRecord parses the _mta-sts TXT record ("v=STSv1; id=...") and
// returns its id (RFC 8461 §3.1).
func ParseRecord(txt string) (id string, err error) {
	fields := strings.Split(txt, ";")
	if strings.TrimSpace(fields[0]) != "v=STSv1" {
		return "", fmt.Errorf("%w: record does not start with v=STSv1", ErrSyntax)
	}
	for _, f := range fields[1:] {
		k, v, ok := strings.Cut(strings.TrimSpace(f), "=")
		if !ok {
			if strings.TrimSpace(f) == "" {
				continue
			}
			return "", fmt.Errorf("%w: field %q", ErrSyntax, f)
		}
		if k == "id" {
			if v == "" || len(v) > 32 || strings.Trim(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") != "" {
				return "", fmt.Errorf("%w: id %q", ErrSyntax, v)
			}
			id = v
		}
	}
	if id == "" {
		return "", fmt.Errorf("%w: record without id", ErrSyntax)
	}
	return id, nil
}

// ParsePolicy parses a policy file (RFC 8461 §3.2): "key: value" lines
// separated by CRLF or LF, unknown keys ignored.
func ParsePolicy(b []byte) (*Policy, error) {
	p := &Policy{}
	version, haveAge := false, false
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimRight(line, "\r")
		if strings.TrimSpace(line) == "" {
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("%w: line %q", ErrSyntax, line)
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		switch k {
		case "version":
			if v != "STSv1" {
				return nil, fmt.Errorf("%w: version %q", ErrSyntax, v)
			}
			version = true
		case "mode":
			if v != ModeEnforce && v != ModeTesting && v != ModeNone {
				return nil, fmt.Errorf("%w: mode %q", ErrSyntax, v)
			}
			p.Mode = v
		case "mx":
			mx := strings.ToLower(strings.TrimSuffix(v, "."))
			if mx == "" || strings.ContainsAny(mx, " \t") {
				return nil, fmt.Errorf("%w: mx %q", ErrSyntax, v)
			}
			p.MX = append(p.MX, mx)
		case "max_age":
			n, err := strconv.ParseUint(v, 10, 32)
			if err != nil || len(v) > 10 {
				return nil, fmt.Errorf("%w: max_age %q", ErrSyntax, v)
			}
			p.MaxAge = min(time.Duration(n)*time.Second, maxMaxAge)
			haveAge = true
		}
	}
	if !version || p.Mode == "" || !haveAge {
		return nil, fmt.Errorf("%w: version, mode and max_age are required", ErrSyntax)
	}
	if p.Mode != ModeNone && len(p.MX) == 0 {
		return nil, fmt.Errorf("%w: mode %s without mx", ErrSyntax, p.Mode)
	}
	return p, nil
}

// String formats the policy file.
func (p *Policy) String() string {
	var b strings.Builder
	b.WriteString("version: STSv1\r\nmode: " + p.Mode + "\r\n")
	for _, mx := range p.MX {
		b.WriteString("mx: " + mx + "\r\n")
	}
	fmt.Fprintf(&b, "max_age: %d\r\n", int64(p.MaxAge/time.Second))
	return b.String()
}

// Matches reports whether host is an allowed MX (RFC 8461 §4.1: exact
// match, or "*." matching exactly one leftmost label).
func (p *Policy) Matches(host string) bool {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	for _, mx := range p.MX {
		if rest, ok := strings.CutPrefix(mx, "*."); ok {
			if label, parent, ok := strings.Cut(host, "."); ok && label != "" && parent == rest {
				return true
			}
			continue
		}
		if mx == host {
			return true
		}
	}
	return false
}

// TXTResolver looks up TXT records (internal/dns.Resolver is one).
type TXTResolver interface {
	LookupTXT(ctx context.Context, name string) ([]string, error)
}

// Fetcher discovers, fetches and caches policies.
type Fetcher struct {
	Resolver TXTResolver
	// Client fetches policies; it must verify certificates (tests use a
	// client trusting their own CA). Redirects are refused.
	Client *http.Client
	// URL builds the policy URL of a domain; default
	// https://mta-sts.DOMAIN/.well-known/mta-sts.txt (RFC 8461 §3.3).
	URL func(domain string) string
	Now func() time.Time
	// Cache, when set, keeps policies across restarts (RFC 8461 §5.1:
	// a cached policy protects the domain while its fetch is blocked, so
	// a restart must not forget it).
	Cache PolicyCache

	mu    sync.Mutex
	cache map[string]cached
}

// PolicyCache keeps fetched policies durably (internal/store is one).
// Load returns found false when it has nothing for the domain.
type PolicyCache interface {
	LoadPolicy(ctx context.Context, domain string) (id, policy string, expires time.Time, found bool, err error)
	SavePolicy(ctx context.Context, domain, id, policy string, expires time.Time) error
}

type cached struct {
	id      string
	policy  *Policy
	expires time.Time
}

// maxPolicySize caps the policy body (RFC 8461 §3.3 suggests 64 KiB).
const maxPolicySize = 64 << 10

func (f *Fetcher) now() time.Time {
	if f.Now != nil {
		return f.Now()
	}
	return time.Now()
}

// Policy returns the policy in force for domain, or nil when the domain
// has none. A failed refresh falls back on an unexpired cached policy
// (RFC 8461 §5.1), so an attacker blocking the fetch gains nothing.
func (f *Fetcher) Policy(ctx context.Context, domain string) (*Policy, error) {
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	c, haveCache := f.cached(ctx, domain)
	if haveCache && !f.now().Before(c.expires) {
		haveCache = false
	}
	id, err := f.lookupID(ctx, domain)
	if err != nil || id == "" {
		// No (valid) record: keep using a cached policy (§5.1).
		if haveCache {
			return c.policy, nil
		}
		return nil, nil
	}
	if haveCache && c.id == id {
		return c.policy, nil
	}
	p, err := f.fetch(ctx, domain)
	if err != nil {
		if haveCache {
			return c.policy, nil
		}
		return nil, err
	}
	c = cached{id: id, policy: p, expires: f.now().Add(p.MaxAge)}
	f.remember(domain, c)
	if f.Cache != nil {
		// A policy that cannot be kept durably still applies now.
		f.Cache.SavePolicy(ctx, domain, id, p.String(), c.expires)
	}
	return p, nil
}

// cached returns the policy known for domain: from memory, else from the
// durable cache.
func (f *Fetcher) cached(ctx context.Context, domain string) (cached, bool) {
	f.mu.Lock()
	c, ok := f.cache[domain]
	f.mu.Unlock()
	if ok || f.Cache == nil {
		return c, ok
	}
	id, text, expires, found, err := f.Cache.LoadPolicy(ctx, domain)
	if err != nil || !found {
		return c, false
	}
	p, err := ParsePolicy([]byte(text))
	if err != nil {
		return c, false
	}
	c = cached{id: id, policy: p, expires: expires}
	f.remember(domain, c)
	return c, true
}

func (f *Fetcher) remember(domain string, c cached) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cache == nil {
		f.cache = map[string]cached{}
	}
	f.cache[domain] = c
}

func (f *Fetcher) lookupID(ctx context.Context, domain string) (string, error) {
	txts, err := f.Resolver.LookupTXT(ctx, "_mta-sts."+domain)
	if err != nil {
		return "", err
	}
	var ids []string
	for _, t := range txts {
		if !strings.HasPrefix(t, "v=STSv1") {
			continue
		}
		id, err := ParseRecord(t)
		if err != nil {
			return "", err
		}
		ids = append(ids, id)
	}
	// RFC 8461 §3.1: more than one record is treated as none.
	if len(ids) != 1 {
		return "", nil
	}
	return ids[0], nil
}

func (f *Fetcher) fetch(ctx context.Context, domain string) (*Policy, error) {
	url := "https://mta-sts." + domain + "/.well-known/mta-sts.txt"
	if f.URL != nil {
		url = f.URL(domain)
	}
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	client := http.DefaultClient
	if f.Client != nil {
		client = f.Client
	}
	c := *client
	// RFC 8461 §3.3: HTTP redirects MUST NOT be followed.
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("mtasts: fetch %s: %w", domain, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("mtasts: fetch %s: HTTP %d", domain, resp.StatusCode)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxPolicySize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxPolicySize {
		return nil, fmt.Errorf("mtasts: policy of %s too large", domain)
	}
	return ParsePolicy(b)
}
