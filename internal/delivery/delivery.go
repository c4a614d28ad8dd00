// Package delivery is the inbound pipeline: it resolves recipients to
// local accounts, writes the message once (trace headers in front) into a
// durable blob, parses it, and stores it into the INBOX of every recipient
// in one group-committed store.Deliver call.
//
// It knows nothing about the SMTP connection: the server hands it an
// envelope and a body reader and gets back a result or a typed smtp.Reply.
// It never replies to a client and never speaks SQL.
package delivery

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/tern-mail/tern/internal/message"
	"github.com/tern-mail/tern/internal/smtp"
	"github.com/tern-mail/tern/internal/store"
)

// parseInMemory is the size up to which a message is parsed from the copy
// kept while writing it; larger ones are re-read from the blob file. It
// bounds the memory one transaction holds (times MaxConns for the server).
const parseInMemory = 128 << 10

// Options configure a Deliverer.
type Options struct {
	Logger *slog.Logger
	// Postmaster is where "RCPT TO:<postmaster>" without a domain goes
	// (RFC 5321 §4.1.1.3), e.g. "postmaster@example.org". Empty: the
	// first local domain's postmaster.
	Postmaster string
}

// Deliverer runs the inbound pipeline on one store.
type Deliverer struct {
	st   *store.Store
	log  *slog.Logger
	opts Options

	// domains caches IsLocalDomain for a few seconds: every RCPT asks,
	// and the answer changes only when an admin adds a domain.
	mu         sync.Mutex
	domains    map[string]bool
	domainsAt  time.Time
	resolved   map[string]resolved
	resolvedAt time.Time
}

// domainCacheTTL bounds how long a new or removed domain takes to be seen,
// resolveCacheTTL the same for accounts and aliases.
const (
	domainCacheTTL  = 5 * time.Second
	resolveCacheTTL = 2 * time.Second
)

// New returns a Deliverer for st.
func New(st *store.Store, opts Options) *Deliverer {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Deliverer{st: st, log: opts.Logger, opts: opts}
}

// Lookup resolves one recipient address at RCPT time. It returns the local
// accounts and remote targets (aliases pointing outside), or a reply:
// 550 5.1.1 for an unknown local user, 452 4.2.2 when the only account is
// over quota (sizeHint is the MAIL SIZE= value, 0 if none), 451 4.3.0 on a
// store failure. The caller checks first that the domain is local
// (IsLocal).
func (d *Deliverer) Lookup(ctx context.Context, addr smtp.Address, sizeHint int64) (store.Resolution, error) {
	target := addr.Canonical()
	if addr.Domain == "" {
		pm, err := d.postmaster(ctx)
		if err != nil {
			return store.Resolution{}, err
		}
		target = pm
	}
	res, err := d.resolve(ctx, target)
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrInvalid) {
		return res, smtp.ErrUnknownUser().WithDetail(err.Error())
	}
	if err != nil {
		return res, smtp.ErrLocal().WithDetail(err.Error())
	}
	if len(res.Accounts) == 1 && len(res.Remote) == 0 && overQuota(res.Accounts[0], sizeHint) {
		return res, smtp.ErrMailboxFull().WithDetail(res.Accounts[0].Address)
	}
	return res, nil
}

// resolve is store.Resolve behind a short-lived cache of found addresses:
// a busy mailbox gets many RCPTs a second. A changed or deleted account or
// alias shows within resolveCacheTTL (the store still checks quota and
// existence at Deliver).
func (d *Deliverer) resolve(ctx context.Context, addr string) (store.Resolution, error) {
	key := strings.ToLower(addr)
	now := time.Now()
	d.mu.Lock()
	if now.Sub(d.resolvedAt) > resolveCacheTTL || len(d.resolved) > 10000 {
		d.resolved, d.resolvedAt = map[string]resolved{}, now
	}
	r, ok := d.resolved[key]
	d.mu.Unlock()
	if ok {
		return r.res, r.err
	}
	res, err := d.st.Resolve(ctx, addr)
	if err == nil { // unknown users are not cached: a new account works at once
		d.mu.Lock()
		d.resolved[key] = resolved{res, err}
		d.mu.Unlock()
	}
	return res, err
}

type resolved struct {
	res store.Resolution
	err error
}

func overQuota(a store.Account, size int64) bool {
	return a.QuotaBytes > 0 && a.UsedBytes+size >= a.QuotaBytes
}

func (d *Deliverer) postmaster(ctx context.Context) (string, error) {
	if d.opts.Postmaster != "" {
		return d.opts.Postmaster, nil
	}
	doms, err := d.st.Domains(ctx)
	if err != nil {
		return "", smtp.ErrLocal().WithDetail(err.Error())
	}
	if len(doms) == 0 {
		return "", smtp.ErrUnknownUser().WithDetail("no local domain for postmaster")
	}
	return "postmaster@" + doms[0], nil
}

// IsLocal reports whether a domain is one of the store's domains.
func (d *Deliverer) IsLocal(ctx context.Context, domain string) (bool, error) {
	if domain == "" {
		return true, nil // bare "postmaster"
	}
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	now := time.Now()
	d.mu.Lock()
	if now.Sub(d.domainsAt) > domainCacheTTL {
		d.domains, d.domainsAt = map[string]bool{}, now
	}
	ok, cached := d.domains[domain]
	d.mu.Unlock()
	if cached {
		return ok, nil
	}
	ok, err := d.st.IsLocalDomain(ctx, domain)
	if err != nil {
		return false, smtp.ErrLocal().WithDetail(err.Error())
	}
	d.mu.Lock()
	if len(d.domains) < 10000 { // hostile clients may try many names
		d.domains[domain] = ok
	}
	d.mu.Unlock()
	return ok, nil
}

// Spooled is a message written to a durable blob and parsed.
type Spooled struct {
	Blob   store.Blob
	Parsed *message.Parsed
}

// Spool writes header (the trace fields the server adds, already
// formatted) followed by body into a new blob, fsyncs it and parses the
// result. More than maxBytes of body (0: no limit) fails with 552 5.3.4.
// A read error of body is returned as is (the SMTP layer knows its
// meaning, e.g. a size error or an aborted BDAT).
func (d *Deliverer) Spool(ctx context.Context, header []byte, body io.Reader, maxBytes int64) (Spooled, error) {
	w, err := d.st.NewBlob()
	if err != nil {
		return Spooled{}, smtp.ErrLocal().WithDetail(err.Error())
	}
	var mem bytes.Buffer
	hops := newHopCounter()
	sink := io.MultiWriter(w, &capWriter{buf: &mem, max: parseInMemory}, hops)
	if _, err := sink.Write(header); err != nil {
		w.Abort()
		return Spooled{}, smtp.ErrLocal().WithDetail(err.Error())
	}
	src := body
	if maxBytes > 0 {
		src = io.LimitReader(body, maxBytes+1)
	}
	n, err := io.Copy(sink, src)
	if err != nil {
		w.Abort()
		return Spooled{}, err
	}
	if maxBytes > 0 && n > maxBytes {
		w.Abort()
		return Spooled{}, smtp.ErrTooBig()
	}
	if hops.n > MaxHops {
		w.Abort()
		return Spooled{}, tooManyHops()
	}
	blob, err := w.Commit()
	if err != nil {
		return Spooled{}, smtp.ErrLocal().WithDetail(err.Error())
	}
	var parsed *message.Parsed
	if blob.Size <= parseInMemory {
		parsed, err = message.Parse(bytes.NewReader(mem.Bytes()))
	} else {
		parsed, err = d.parseFile(blob.ID)
	}
	if err != nil {
		d.st.DiscardBlob(ctx, blob.ID)
		return Spooled{}, smtp.ErrLocal().WithDetail("parse: " + err.Error())
	}
	return Spooled{Blob: blob, Parsed: parsed}, nil
}

func (d *Deliverer) parseFile(id string) (*message.Parsed, error) {
	f, err := d.st.OpenBlob(id)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return message.Parse(f)
}

// capWriter keeps the first max bytes and silently drops the rest.
type capWriter struct {
	buf *bytes.Buffer
	max int
}

func (c *capWriter) Write(p []byte) (int, error) {
	if room := c.max + 1 - c.buf.Len(); room > 0 {
		c.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

// Store delivers a spooled message to the INBOX of every account (each
// account once, however many of its addresses were recipients) and returns
// once the store made it durable. It returns nil if at least one account
// got the message; 452 4.2.2 if all were over quota; 451 4.3.0 otherwise.
// Per-account failures are in the returned results.
func (d *Deliverer) Store(ctx context.Context, sp Spooled, accounts []store.Account) ([]store.Delivered, error) {
	seen := make(map[int64]bool, len(accounts))
	targets := make([]store.Target, 0, len(accounts))
	for _, a := range accounts {
		if !seen[a.ID] {
			seen[a.ID] = true
			targets = append(targets, store.Target{AccountID: a.ID})
		}
	}
	if len(targets) == 0 {
		return nil, nil
	}
	res, err := d.st.Deliver(ctx, &store.Delivery{Blob: sp.Blob, Parsed: sp.Parsed, InternalDate: time.Now(), Targets: targets})
	if err != nil {
		d.st.DiscardBlob(context.WithoutCancel(ctx), sp.Blob.ID)
		return res, smtp.ErrLocal().WithDetail(err.Error())
	}
	ok, quota := 0, 0
	for _, r := range res {
		switch {
		case r.Err == nil:
			ok++
		case errors.Is(r.Err, store.ErrOverQuota):
			quota++
		}
	}
	if ok > 0 {
		return res, nil
	}
	d.st.DiscardBlob(context.WithoutCancel(ctx), sp.Blob.ID)
	if quota == len(res) {
		return res, smtp.ErrMailboxFull()
	}
	return res, smtp.ErrLocal().WithDetail(fmt.Sprintf("no target stored: %v", res[0].Err))
}

// Discard removes a spooled blob that nothing ended up referencing.
func (d *Deliverer) Discard(ctx context.Context, sp Spooled) {
	d.st.DiscardBlob(context.WithoutCancel(ctx), sp.Blob.ID)
}

// TraceHeader is what final delivery puts in front of a message: the
// Return-Path with the envelope sender and this hop's Received field
// (RFC 5321 §4.4).
func TraceHeader(from smtp.Address, r smtp.ReceivedInfo) []byte {
	return []byte(smtp.ReturnPath(from) + smtp.Received(r))
}
