// Package queue is tern's durable outbound queue: it accepts messages
// (Enqueue returns once the entry is durable in the store), delivers them
// to the recipients' servers (MX lookup, STARTTLS, MTA-STS, REQUIRETLS,
// DKIM signing at send time, one transaction per destination domain,
// connection reuse, per-destination concurrency), retries with
// exponential backoff and jitter, and reports failures and delays to the
// sender with RFC 3464 notifications. Local recipients (a notification to
// a local sender, sendmail) are delivered straight into their mailboxes.
// It never holds the whole queue in memory: the scheduler pages through
// due entries.
package queue

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/tern-mail/tern/internal/dns"
	"github.com/tern-mail/tern/internal/mtasts"
	"github.com/tern-mail/tern/internal/store"
)

// Recipient is one envelope recipient with its RFC 3461 parameters.
type Recipient struct {
	Address string
	Notify  []string // NEVER, or some of SUCCESS, FAILURE, DELAY
	ORcpt   string   // "rfc822;addr"
}

// Message is what the submission server, sendmail and the queue's own
// notifications hand to Enqueue. The queue entry takes a reference on
// Blob; the caller keeps its own.
type Message struct {
	AccountID  int64
	From       string // envelope sender; "" is the null reverse-path
	Recipients []Recipient
	EnvID      string // RFC 3461 ENVID
	Ret        string // RFC 3461 RET: FULL or HDRS
	RequireTLS bool   // RFC 8689
	Blob       store.Blob
}

// Resolver finds mail hosts and addresses (internal/dns.Resolver).
// MailHostsDNSSEC also says whether the host list was DNSSEC-validated
// (the upstream's AD bit), which REQUIRETLS needs (RFC 8689 §4.2.1).
type Resolver interface {
	MailHostsDNSSEC(ctx context.Context, domain string) ([]dns.MX, bool, error)
	LookupIP(ctx context.Context, host string) ([]net.IP, error)
}

// PolicySource gives the MTA-STS policy of a domain, nil when none
// (internal/mtasts.Fetcher).
type PolicySource interface {
	Policy(ctx context.Context, domain string) (*mtasts.Policy, error)
}

// Signer returns DKIM-Signature fields for a message of a domain
// (internal/dkim.Keys), read from a reader or, without a copy, from memory.
type Signer interface {
	Sign(domain string, msg io.Reader) ([]byte, error)
	SignBytes(domain string, msg []byte) ([]byte, error)
}

// TLS modes of a smarthost.
const (
	TLSOpportunistic = "opportunistic" // STARTTLS when offered
	TLSStartTLS      = "starttls"      // STARTTLS required, certificate verified
	TLSImplicit      = "implicit"      // TLS from the first byte (port 465)
	TLSNone          = "none"
)

// Smarthost relays all remote mail through one server.
type Smarthost struct {
	Host     string
	Port     int
	TLS      string // one of the TLS* modes; default starttls
	Username string
	Password string
}

// Config wires a Queue.
type Config struct {
	Store    *store.Store
	Resolver Resolver
	MTASTS   PolicySource // nil: MTA-STS not checked
	DKIM     Signer       // nil: messages leave unsigned
	Hostname string       // EHLO name and Reporting-MTA
	Logger   *slog.Logger

	// Port is the destination port (25; tests use another).
	Port int
	// Dialer dials remote servers; set LocalAddr to choose the source
	// address. Default: a net.Dialer with a 30 s timeout.
	Dialer *net.Dialer
	// TLS is the base client TLS configuration (RootCAs for tests).
	TLS       *tls.Config
	Smarthost *Smarthost

	Workers        int           // concurrent deliveries (default 64)
	PerDestination int           // connections per destination (default 8)
	RetryBase      time.Duration // first retry delay (default 5 min)
	RetryMax       time.Duration // cap of the backoff (default 1 h)
	MaxLifetime    time.Duration // give up after this (default 5 days)
	// DelayWarning sends a delay notification after this long (default
	// 4 h); negative disables it.
	DelayWarning time.Duration
	// DownTTL is how long a destination that refused all connections is
	// considered down, so that its other messages wait without dialing
	// (default 1 min).
	DownTTL time.Duration
	// IdleTimeout closes cached connections unused this long (default 5 s).
	IdleTimeout time.Duration
	// StopGrace is how long Run waits for deliveries in progress when
	// stopped before interrupting them (default 30 s).
	StopGrace time.Duration
	Now       func() time.Time
}

// Queue is the outbound queue. Create it with New, deliver with Run.
type Queue struct {
	cfg  Config
	st   *store.Store
	log  *slog.Logger
	wake chan struct{}

	mu    sync.Mutex
	dests map[string]*dest
	local map[string]localCache
}

// New returns a queue; nothing happens until Run.
func New(cfg Config) *Queue {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Hostname == "" {
		cfg.Hostname = "localhost"
	}
	if cfg.Port == 0 {
		cfg.Port = 25
	}
	if cfg.Dialer == nil {
		cfg.Dialer = &net.Dialer{Timeout: 30 * time.Second}
	}
	if cfg.TLS == nil {
		cfg.TLS = &tls.Config{}
	}
	defDur := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	defDur(&cfg.RetryBase, 5*time.Minute)
	defDur(&cfg.RetryMax, time.Hour)
	defDur(&cfg.MaxLifetime, 5*24*time.Hour)
	defDur(&cfg.DelayWarning, 4*time.Hour)
	defDur(&cfg.DownTTL, time.Minute)
	defDur(&cfg.IdleTimeout, 5*time.Second)
	defDur(&cfg.StopGrace, 30*time.Second)
	if cfg.Workers <= 0 {
		cfg.Workers = 64
	}
	if cfg.PerDestination <= 0 {
		cfg.PerDestination = 8
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Smarthost != nil && cfg.Smarthost.TLS == "" {
		cfg.Smarthost.TLS = TLSStartTLS
	}
	return &Queue{cfg: cfg, st: cfg.Store, log: cfg.Logger, wake: make(chan struct{}, 1), dests: map[string]*dest{}, local: map[string]localCache{}}
}

// ErrNoRecipients is returned by Enqueue for a message without recipients.
var ErrNoRecipients = errors.New("queue: no recipients")

// Enqueue stores the message durably and wakes the delivery loop.
func (q *Queue) Enqueue(ctx context.Context, m *Message) (int64, error) {
	if len(m.Recipients) == 0 {
		return 0, ErrNoRecipients
	}
	e := &store.QueueEntry{
		AccountID: m.AccountID, From: m.From, EnvID: m.EnvID, Ret: strings.ToUpper(m.Ret),
		RequireTLS: m.RequireTLS, Blob: m.Blob, Created: q.cfg.Now(),
	}
	for _, r := range m.Recipients {
		var notify []string
		for _, n := range r.Notify {
			notify = append(notify, strings.ToUpper(n))
		}
		e.Recipients = append(e.Recipients, store.QueueRecipient{Address: r.Address, Notify: notify, ORcpt: r.ORcpt})
	}
	id, err := q.st.QueueAdd(ctx, e)
	if err != nil {
		return 0, fmt.Errorf("queue: %w", err)
	}
	q.poke()
	return id, nil
}

// Wake makes the delivery loop look at the queue now: for entries queued
// or retried by another process (tern sendmail, tern queue retry).
func (q *Queue) Wake() { q.poke() }

func (q *Queue) poke() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// List returns queued entries after afterID, at most limit (0: all).
func (q *Queue) List(ctx context.Context, afterID int64, limit int) ([]store.QueueEntry, error) {
	return q.st.QueueList(ctx, afterID, limit)
}

// Show returns one entry and the header of its message.
func (q *Queue) Show(ctx context.Context, id int64) (store.QueueEntry, []byte, error) {
	e, err := q.st.QueueGet(ctx, id)
	if err != nil {
		return e, nil, err
	}
	f, err := q.st.OpenBlob(e.Blob.ID)
	if err != nil {
		return e, nil, err
	}
	defer f.Close()
	hdr, err := readHeader(f, 256<<10)
	return e, hdr, err
}

// Retry makes one entry due now; RetryAll every entry. A running server
// picks the change up at its next scan (at most a minute) or at once when
// it is this process.
func (q *Queue) Retry(ctx context.Context, id int64) error {
	if id <= 0 {
		return fmt.Errorf("queue: bad id %d", id)
	}
	_, err := q.st.QueueRetry(ctx, id, q.cfg.Now())
	q.poke()
	return err
}

// RetryAll makes every entry due now and returns how many there are.
func (q *Queue) RetryAll(ctx context.Context) (int, error) {
	n, err := q.st.QueueRetry(ctx, 0, q.cfg.Now())
	q.poke()
	return n, err
}

// Drop removes an entry without delivering it or notifying anyone.
func (q *Queue) Drop(ctx context.Context, id int64) error {
	return q.st.QueueDrop(ctx, id)
}

// readHeader returns the header section of a message, at most max bytes.
func readHeader(r io.Reader, max int) ([]byte, error) {
	buf := make([]byte, 0, 4096)
	tmp := make([]byte, 4096)
	for len(buf) < max {
		n, err := r.Read(tmp)
		buf = append(buf, tmp[:n]...)
		if i := headerEnd(buf); i >= 0 {
			return buf[:i], nil
		}
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return nil, err
		}
	}
	return buf[:max], nil
}

// headerEnd is the offset just after the header's last line ending.
func headerEnd(b []byte) int {
	for i := 0; i+1 < len(b); i++ {
		if b[i] != '\n' {
			continue
		}
		if b[i+1] == '\n' {
			return i + 1
		}
		if b[i+1] == '\r' && i+2 < len(b) && b[i+2] == '\n' {
			return i + 1
		}
	}
	return -1
}
