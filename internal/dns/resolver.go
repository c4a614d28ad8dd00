// Package dns resolves what outbound mail needs (MX with the RFC 5321
// §5.1 implicit MX and the RFC 7505 null MX, A/AAAA, TXT) by querying a
// configured DNS server with github.com/miekg/dns, so that tests use an
// in-process server and never the host resolver. It also formats the
// records a domain must publish (Records). It keeps no global state.
package dns

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sort"
	"strings"
	"time"

	mdns "github.com/miekg/dns"
)

// Errors; compare with errors.Is. Anything else from a lookup is
// temporary (SERVFAIL, timeout, network).
var (
	// ErrNotFound: the name does not exist or has no record of the type.
	ErrNotFound = errors.New("dns: no such record")
	// ErrNullMX: the domain publishes "MX 0 ." and accepts no mail.
	ErrNullMX = errors.New("dns: domain accepts no mail (null MX, RFC 7505)")
)

// Resolver queries one DNS server.
type Resolver struct {
	// Server is "host:port" of the recursive resolver to ask.
	Server  string
	Timeout time.Duration
	client  *mdns.Client
}

// NewResolver returns a resolver asking server ("host:port"). An empty
// server means the first nameserver of /etc/resolv.conf (production only).
func NewResolver(server string) (*Resolver, error) {
	if server == "" {
		cfg, err := mdns.ClientConfigFromFile("/etc/resolv.conf")
		if err != nil || len(cfg.Servers) == 0 {
			return nil, fmt.Errorf("dns: no resolver configured: %v", err)
		}
		server = net.JoinHostPort(cfg.Servers[0], cfg.Port)
	}
	return &Resolver{Server: server, Timeout: 10 * time.Second, client: &mdns.Client{}}, nil
}

// query asks one question, over UDP and again over TCP when truncated.
// ad is the answer's AD bit: the upstream validated it with DNSSEC
// (RFC 4035 §3.2.3). It means something only when the configured server
// is a validating resolver reached over a trusted path (RFC 4035 §4.9.3),
// such as one on the same host; the Resolver takes it as given.
func (r *Resolver) query(ctx context.Context, name string, qtype uint16) (rrs []mdns.RR, ad bool, err error) {
	m := new(mdns.Msg)
	m.SetQuestion(mdns.Fqdn(name), qtype)
	m.RecursionDesired = true
	// RFC 6840 §5.7: setting AD in a query asks for the AD bit in the
	// answer without the DNSSEC records themselves (no DO bit).
	m.AuthenticatedData = true
	m.SetEdns0(4096, false)
	ctx, cancel := context.WithTimeout(ctx, r.Timeout)
	defer cancel()
	c := r.client
	if c == nil {
		c = &mdns.Client{}
	}
	resp, _, err := c.ExchangeContext(ctx, m, r.Server)
	if err == nil && resp.Truncated {
		tc := &mdns.Client{Net: "tcp"}
		resp, _, err = tc.ExchangeContext(ctx, m, r.Server)
	}
	if err != nil {
		return nil, false, fmt.Errorf("dns: %s %s: %w", name, mdns.TypeToString[qtype], err)
	}
	ad = resp.AuthenticatedData
	switch resp.Rcode {
	case mdns.RcodeSuccess:
	case mdns.RcodeNameError:
		return nil, ad, fmt.Errorf("%w: %s (NXDOMAIN)", ErrNotFound, name)
	default:
		return nil, false, fmt.Errorf("dns: %s %s: %s", name, mdns.TypeToString[qtype], mdns.RcodeToString[resp.Rcode])
	}
	for _, rr := range resp.Answer {
		if rr.Header().Rrtype == qtype {
			rrs = append(rrs, rr)
		}
	}
	if len(rrs) == 0 {
		return nil, ad, fmt.Errorf("%w: %s %s", ErrNotFound, name, mdns.TypeToString[qtype])
	}
	return rrs, ad, nil
}

// MX is one mail exchanger.
type MX struct {
	Host string // without trailing dot
	Pref uint16
}

// LookupMX returns the MX records of domain sorted by preference, with a
// random order among equal preferences (RFC 5321 §5.1). ErrNullMX for a
// null MX; ErrNotFound when there is no MX record.
func (r *Resolver) LookupMX(ctx context.Context, domain string) ([]MX, error) {
	mxs, _, err := r.lookupMX(ctx, domain)
	return mxs, err
}

// lookupMX is LookupMX that also returns the answer's AD bit.
func (r *Resolver) lookupMX(ctx context.Context, domain string) ([]MX, bool, error) {
	rrs, ad, err := r.query(ctx, domain, mdns.TypeMX)
	if err != nil {
		return nil, ad, err
	}
	var mxs []MX
	for _, rr := range rrs {
		mx := rr.(*mdns.MX)
		// RFC 7505 §3: a single MX with the root as host means no mail.
		if mx.Mx == "." {
			if len(rrs) == 1 {
				return nil, ad, fmt.Errorf("%w: %s", ErrNullMX, domain)
			}
			continue
		}
		mxs = append(mxs, MX{Host: strings.TrimSuffix(mx.Mx, "."), Pref: mx.Preference})
	}
	rand.Shuffle(len(mxs), func(i, j int) { mxs[i], mxs[j] = mxs[j], mxs[i] })
	sort.SliceStable(mxs, func(i, j int) bool { return mxs[i].Pref < mxs[j].Pref })
	return mxs, ad, nil
}

// LookupIP returns the IPv4 and IPv6 addresses of host (IPv4 first). It
// fails only when both lookups fail; ErrNotFound when neither has records.
func (r *Resolver) LookupIP(ctx context.Context, host string) ([]net.IP, error) {
	ips, _, err := r.lookupIP(ctx, host)
	return ips, err
}

// lookupIP is LookupIP that also reports whether every answer it rests
// on carried the AD bit.
func (r *Resolver) lookupIP(ctx context.Context, host string) ([]net.IP, bool, error) {
	if ip := net.ParseIP(host); ip != nil {
		return []net.IP{ip}, false, nil
	}
	var ips []net.IP
	var errs []error
	secure := true
	for _, t := range []uint16{mdns.TypeA, mdns.TypeAAAA} {
		rrs, ad, err := r.query(ctx, host, t)
		secure = secure && ad
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, rr := range rrs {
			switch v := rr.(type) {
			case *mdns.A:
				ips = append(ips, v.A)
			case *mdns.AAAA:
				ips = append(ips, v.AAAA)
			}
		}
	}
	if len(ips) > 0 {
		return ips, secure, nil
	}
	if errors.Is(errs[0], ErrNotFound) && errors.Is(errs[1], ErrNotFound) {
		return nil, secure, errs[0]
	}
	for _, e := range errs {
		if !errors.Is(e, ErrNotFound) {
			return nil, false, e
		}
	}
	return nil, secure, errs[0]
}

// LookupTXT returns the TXT strings of name, each record's strings joined.
func (r *Resolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	rrs, _, err := r.query(ctx, name, mdns.TypeTXT)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, rr := range rrs {
		out = append(out, strings.Join(rr.(*mdns.TXT).Txt, ""))
	}
	return out, nil
}

// MailHosts returns the hosts to try for domain in order: its MX hosts,
// or the domain itself when it has no MX but has an address (RFC 5321 §5.1
// implicit MX). ErrNullMX and ErrNotFound are permanent failures.
func (r *Resolver) MailHosts(ctx context.Context, domain string) ([]MX, error) {
	mxs, _, err := r.MailHostsDNSSEC(ctx, domain)
	return mxs, err
}

// MailHostsDNSSEC is MailHosts that also reports whether the answers the
// host list rests on were DNSSEC-validated (AD bit set by the upstream):
// the MX answer, or for an implicit MX the denial of the MX record and
// the domain's addresses. RFC 8689 §4.2.1 requires that (or an MTA-STS
// policy) before a REQUIRETLS message goes to a host.
func (r *Resolver) MailHostsDNSSEC(ctx context.Context, domain string) ([]MX, bool, error) {
	mxs, ad, err := r.lookupMX(ctx, domain)
	if err == nil {
		if len(mxs) == 0 {
			return nil, ad, fmt.Errorf("%w: %s", ErrNullMX, domain)
		}
		return mxs, ad, nil
	}
	if !errors.Is(err, ErrNotFound) {
		return nil, false, err
	}
	_, ipAD, err := r.lookupIP(ctx, domain)
	if err != nil {
		return nil, false, err
	}
	return []MX{{Host: domain}}, ad && ipAD, nil
}
