// Package smtpserver runs tern's SMTP listeners on github.com/emersion/go-smtp:
// inbound mail on port 25 (local recipients only, checked at RCPT) and
// authenticated submission on 587 (STARTTLS before AUTH) and 465 (implicit
// TLS). Sessions turn each command into a typed smtp.Reply; the inbound
// pipeline is internal/delivery, the outbound side an Enqueuer.
//
// The package never touches SQL and never writes to a client outside
// go-smtp's reply path. Every connection is bounded: line length, read and
// write deadlines, a whole-connection lifetime, errors and commands per
// connection, connections per client address.
package smtpserver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"github.com/tern-mail/tern/internal/account"
	"github.com/tern-mail/tern/internal/delivery"
	"github.com/tern-mail/tern/internal/store"
)

// Mode says what a listener accepts. Modes combine: Inbound|Submission
// accepts mail for local users from anyone and relays for authenticated
// accounts.
type Mode int

const (
	// Inbound accepts mail for local recipients without authentication
	// (port 25); other domains get 554 5.7.1.
	Inbound Mode = 1 << iota
	// Submission offers AUTH and relays for authenticated accounts (ports
	// 587 and 465); without Inbound, MAIL needs AUTH first.
	Submission
)

// Limits are per-account submission limits.
type Limits struct {
	// RecipientsPerMessage caps RCPTs in one transaction (452 4.5.3).
	RecipientsPerMessage int
	// MessagesPerDay caps accepted messages in any 24 hours (451 4.7.1).
	MessagesPerDay int
}

// Config configures a Server. Zero values take the defaults noted.
type Config struct {
	Mode     Mode
	Store    *store.Store
	Accounts *account.Service
	// Queue takes messages for remote recipients (submission, and
	// inbound aliases that point outside). nil: such recipients get 451.
	Queue    Enqueuer
	Hostname string
	// TLS enables STARTTLS (and is required by ServeTLS).
	TLS    *tls.Config
	Logger *slog.Logger

	MaxMessageBytes int64 // default 50 MiB
	MaxRecipients   int   // per transaction, default 100
	// InsecureAuth allows AUTH PLAIN/LOGIN without TLS (tern dev on loopback).
	InsecureAuth bool

	ReadTimeout     time.Duration // per command, default 5 minutes (RFC 5321 §4.5.3.2.7)
	WriteTimeout    time.Duration // default 1 minute
	MaxConnDuration time.Duration // whole connection, default 30 minutes
	MaxLineLength   int           // default 128 KiB (long lines in real mail)
	MaxConns        int           // default 1000
	MaxConnsPerIP   int           // default 50
	MaxErrors       int           // error replies before 421, default 10
	MaxCommands     int           // MAIL/RCPT/DATA/RSET/AUTH per connection, default 10000
	// AuthFailDelay slows down password guessing; default 1s.
	AuthFailDelay time.Duration

	// DefaultLimits apply to every account unless LimitsFor says
	// otherwise; defaults 100 recipients and 1000 messages a day.
	DefaultLimits Limits
	LimitsFor     func(store.Account) Limits
}

func (c *Config) setDefaults() {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defDur := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	if c.MaxMessageBytes <= 0 {
		c.MaxMessageBytes = 50 << 20
	}
	def(&c.MaxRecipients, 100)
	def(&c.MaxLineLength, 128<<10)
	def(&c.MaxConns, 1000)
	def(&c.MaxConnsPerIP, 50)
	def(&c.MaxErrors, 10)
	def(&c.MaxCommands, 10000)
	def(&c.DefaultLimits.RecipientsPerMessage, 100)
	def(&c.DefaultLimits.MessagesPerDay, 1000)
	defDur(&c.ReadTimeout, 5*time.Minute)
	defDur(&c.WriteTimeout, time.Minute)
	defDur(&c.MaxConnDuration, 30*time.Minute)
	defDur(&c.AuthFailDelay, time.Second)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Hostname == "" {
		c.Hostname = "localhost"
	}
	if c.Mode == 0 {
		c.Mode = Inbound
	}
}

// Server is one SMTP service (one Mode) over any number of listeners.
type Server struct {
	cfg Config
	gs  *gosmtp.Server
	del *delivery.Deliverer
	log *slog.Logger

	nextID   atomic.Uint64
	draining atomic.Bool
	refusing atomic.Int64 // refusals being written

	mu    sync.Mutex
	conns map[*trackedConn]struct{}
	perIP map[netip.Addr]int
}

// New returns a Server; start it with Serve or ServeTLS.
func New(cfg Config) *Server {
	cfg.setDefaults()
	s := &Server{
		cfg:   cfg,
		log:   cfg.Logger,
		del:   delivery.New(cfg.Store, delivery.Options{Logger: cfg.Logger}),
		conns: map[*trackedConn]struct{}{},
		perIP: map[netip.Addr]int{},
	}
	gs := gosmtp.NewServer(gosmtp.BackendFunc(s.newSession))
	gs.Domain = cfg.Hostname
	gs.TLSConfig = cfg.TLS
	gs.MaxMessageBytes = cfg.MaxMessageBytes
	gs.MaxRecipients = cfg.MaxRecipients
	if cfg.Mode == Submission {
		// Each account has its own cap (Limits), checked in Rcpt;
		// a single server-wide one would forbid raising it.
		gs.MaxRecipients = 0
	}
	gs.MaxLineLength = cfg.MaxLineLength
	gs.AllowInsecureAuth = cfg.InsecureAuth
	gs.ReadTimeout = cfg.ReadTimeout
	gs.WriteTimeout = cfg.WriteTimeout
	gs.EnableSMTPUTF8 = true
	gs.EnableDSN = true
	gs.EnableREQUIRETLS = true
	gs.ErrorLog = slogAdapter{cfg.Logger}
	s.gs = gs
	return s
}

// Serve accepts plain connections on l (port 25, or 587 with STARTTLS).
// It returns nil after Shutdown.
func (s *Server) Serve(l net.Listener) error {
	return s.serve(&listener{Listener: l, srv: s})
}

// ServeTLS accepts implicit-TLS connections on l (port 465, RFC 8314).
func (s *Server) ServeTLS(l net.Listener) error {
	if s.cfg.TLS == nil {
		return errors.New("smtpserver: ServeTLS without a TLS config")
	}
	return s.serve(&listener{Listener: l, srv: s, tls: s.cfg.TLS})
}

func (s *Server) serve(l net.Listener) error {
	err := s.gs.Serve(l)
	if errors.Is(err, net.ErrClosed) && s.draining.Load() {
		return nil
	}
	return err
}

// Shutdown stops accepting, answers 421 to idle connections, lets
// transactions in progress finish (then 421), and returns when every
// connection closed or ctx ends (then the rest are closed abruptly).
func (s *Server) Shutdown(ctx context.Context) error {
	s.draining.Store(true)
	done := make(chan error, 1)
	go func() { done <- s.gs.Shutdown(context.Background()) }()
	s.mu.Lock()
	for c := range s.conns {
		c.drain()
	}
	s.mu.Unlock()
	select {
	case err := <-done:
		if errors.Is(err, gosmtp.ErrServerClosed) {
			err = nil
		}
		return err
	case <-ctx.Done():
		s.mu.Lock()
		for c := range s.conns {
			c.Conn.Close()
		}
		s.mu.Unlock()
		return ctx.Err()
	}
}

// admit registers a new connection, or returns a reply refusing it.
func (s *Server) admit(c net.Conn) (*trackedConn, string) {
	now := time.Now()
	tc := &trackedConn{Conn: c, srv: s, id: s.nextID.Add(1), start: now, end: now.Add(s.cfg.MaxConnDuration)}
	if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
		tc.ip = ap.Addr().Unmap()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.conns) >= s.cfg.MaxConns {
		return nil, "421 4.3.2 too many connections, try again later\r\n"
	}
	if s.perIP[tc.ip] >= s.cfg.MaxConnsPerIP {
		return nil, "421 4.7.0 too many connections from your address\r\n"
	}
	s.perIP[tc.ip]++
	s.conns[tc] = struct{}{}
	tc.draining = s.draining.Load()
	return tc, ""
}

// release forgets a closed connection and writes its log line.
func (s *Server) release(c *trackedConn) {
	s.mu.Lock()
	delete(s.conns, c)
	if s.perIP[c.ip]--; s.perIP[c.ip] <= 0 {
		delete(s.perIP, c.ip)
	}
	s.mu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	s.log.Info("smtp connection", "conn", c.id, "remote", c.RemoteAddr().String(), "helo", c.helo,
		"tls", c.tls, "user", c.user, "messages", c.messages, "commands", c.commands, "errors", c.errors,
		"bytes_in", c.bytesIn.Load(), "bytes_out", c.bytesOut.Load(), "duration", time.Since(c.start).Round(time.Millisecond))
}

// listener admits connections (limits) and wraps them; with tls set it
// returns server-side TLS connections (go-smtp handshakes them).
type listener struct {
	net.Listener
	srv *Server
	tls *tls.Config
}

func (l *listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		tc, refusal := l.srv.admit(c)
		if tc == nil {
			// A flood gets its connections closed without a word once
			// enough refusals are already being written.
			if l.srv.refusing.Add(1) > maxRefusing {
				l.srv.refusing.Add(-1)
				c.Close()
				continue
			}
			go func() {
				defer l.srv.refusing.Add(-1)
				refuse(c, refusal, l.tls)
			}()
			continue
		}
		if l.tls != nil {
			return tls.Server(tc, l.tls), nil
		}
		return tc, nil
	}
}

// maxRefusing caps the goroutines answering refused connections.
const maxRefusing = 100

// refuse answers a connection over the limits without holding the accept
// loop (RFC 5321 §3.1: a 421 greeting is allowed instead of 220).
func refuse(c net.Conn, reply string, cfg *tls.Config) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if cfg != nil {
		c = tls.Server(c, cfg)
	}
	fmt.Fprint(c, reply)
}

// slogAdapter lets go-smtp report its internal errors through slog.
type slogAdapter struct{ log *slog.Logger }

func (a slogAdapter) Printf(format string, v ...any) { a.log.Info(fmt.Sprintf(format, v...)) }
func (a slogAdapter) Println(v ...any)               { a.log.Info(fmt.Sprint(v...)) }
