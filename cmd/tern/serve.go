package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tern-mail/tern/internal/account"
	"github.com/tern-mail/tern/internal/config"
	"github.com/tern-mail/tern/internal/imapserver"
	"github.com/tern-mail/tern/internal/pop3server"
	"github.com/tern-mail/tern/internal/queue"
	"github.com/tern-mail/tern/internal/smtpserver"
	"github.com/tern-mail/tern/internal/store"
	"github.com/tern-mail/tern/internal/tlsconf"
)

// protoServer is what every listener package offers (net/http's shape).
type protoServer interface {
	Serve(l net.Listener) error
	ServeTLS(l net.Listener) error
	Shutdown(ctx context.Context) error
}

// server is a running tern: the store, the services and the listeners.
type server struct {
	cfg      *config.Config
	log      *slog.Logger
	level    *slog.LevelVar
	st       *store.Store
	accts    *account.Service
	certs    *tlsconf.Reloader
	queue    queueDoor
	pop3Lock *pop3server.Locks                 // maildrops in use, across reloads
	services []func(ctx context.Context) error // stopped after the listeners
	sockets  map[string]*socket                // by binding key
	gen      *generation                       // the servers new connections go to
	retired  []protoServer                     // servers of earlier configurations, draining
	ports    []string                          // "IMAP 127.0.0.1:2143", for dev
	wg       sync.WaitGroup
	closing  atomic.Bool
}

// generation is the protocol servers built from one configuration and
// the addresses each serves.
type generation struct {
	servers  []protoServer
	binds    []binding
	handoffs []*handoff
}

type binding struct {
	name        string
	ps          protoServer
	addr        string
	implicitTLS bool
}

// key names the socket a binding uses: a protocol keeps its socket
// across reloads while its address stays configured (an address with
// port 0 then keeps the port it got).
func (b binding) key() string { return b.name + " " + b.addr }

func runServe(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("tern serve", flag.ContinueOnError)
	var loc location
	loc.register(fs)
	if _, err := parseFlags(fs, e, args); err != nil {
		return err
	}
	cfg, err := loc.load()
	if err != nil {
		return err
	}
	srv, err := start(ctx, cfg, e.stderr)
	if err != nil {
		return err
	}
	srv.log.Info("tern serving", "hostname", cfg.Hostname, "data", cfg.Data, "listeners", strings.Join(srv.ports, ", "))
	srv.waitSignals(ctx, func() error {
		c, err := loc.load()
		if err != nil {
			return err
		}
		return srv.reload(c)
	})
	return srv.stop()
}

// newLogger builds the slog logger the configuration asks for.
func newLogger(cfg *config.Config, w io.Writer, level *slog.LevelVar) *slog.Logger {
	level.Set(parseLevel(cfg.Log.Level))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func parseLevel(s string) slog.Level {
	var l slog.Level
	l.UnmarshalText([]byte(s))
	return l
}

// start opens the store and starts every configured listener.
func start(ctx context.Context, cfg *config.Config, logOut io.Writer) (*server, error) {
	s := &server{cfg: cfg, level: new(slog.LevelVar), sockets: map[string]*socket{}, pop3Lock: pop3server.NewLocks()}
	s.log = newLogger(cfg, logOut, s.level)
	var err error
	s.st, err = store.Open(ctx, cfg.Data, store.Options{Logger: s.log.With("component", "store")})
	if err != nil {
		return nil, err
	}
	if n, err := s.st.SweepBlobs(ctx, time.Hour); err != nil {
		s.log.Warn("sweeping unreferenced message files", "err", err)
	} else if n > 0 {
		s.log.Info("removed unreferenced message files", "count", n)
	}
	s.accts = account.New(s.st)
	if cfg.TLS.Cert != "" {
		if s.certs, err = tlsconf.NewReloader(cfg.Path(cfg.TLS.Cert), cfg.Path(cfg.TLS.Key)); err != nil {
			s.st.Close()
			return nil, err
		}
	}
	if err := s.startAll(); err != nil {
		s.stop()
		return nil, err
	}
	return s, nil
}

func (s *server) tlsConfig() *tls.Config {
	if s.certs == nil {
		return nil
	}
	return s.certs.Config()
}

func (s *server) startAll() error {
	q, err := newQueue(s.cfg, s.st, s.log.With("component", "queue"))
	if err != nil {
		return err
	}
	s.runQueue(q)
	if err := s.startControl(); err != nil {
		return err
	}
	gen, err := s.build(s.cfg)
	if err != nil {
		return err
	}
	return s.activate(gen)
}

// build makes the protocol servers a configuration asks for, without
// listening yet.
func (s *server) build(cfg *config.Config) (*generation, error) {
	g := &generation{}
	tlsc := s.tlsConfig()
	inbound := smtpserver.New(smtpserver.Config{
		Mode: smtpserver.Inbound, Store: s.st, Accounts: s.accts, Queue: &s.queue, Hostname: cfg.Hostname, TLS: tlsc,
		Logger: s.log.With("proto", "smtp"), MaxMessageBytes: cfg.SMTP.MaxMessageBytes, MaxRecipients: cfg.SMTP.MaxRecipients,
		MaxConnsPerIP: cfg.SMTP.MaxConnsPerIP,
	})
	submission := smtpserver.New(smtpserver.Config{
		Mode: smtpserver.Submission, Store: s.st, Accounts: s.accts, Queue: &s.queue, Hostname: cfg.Hostname, TLS: tlsc,
		Logger: s.log.With("proto", "submission"), MaxMessageBytes: cfg.SMTP.MaxMessageBytes, MaxRecipients: cfg.Submission.MaxRecipients,
		InsecureAuth:  cfg.Dev,
		DefaultLimits: smtpserver.Limits{RecipientsPerMessage: cfg.Submission.MaxRecipients, MessagesPerDay: cfg.Submission.MaxPerDay},
		LimitsFor: func(a store.Account) smtpserver.Limits {
			return smtpserver.Limits{RecipientsPerMessage: a.MaxRecipients, MessagesPerDay: a.MaxPerDay}
		},
	})
	imap := imapserver.New(imapserver.Config{
		Store: s.st, Accounts: s.accts, TLS: tlsc, Logger: s.log, Hostname: cfg.Hostname, InsecureAuth: cfg.Dev,
	})
	for _, p := range []struct {
		name            string
		ps              protoServer
		plain, implicit []string
	}{
		{"SMTP", inbound, cfg.SMTP.Listen, nil},
		{"submission", submission, cfg.Submission.Listen, cfg.Submission.ListenTLS},
		{"IMAP", imap, cfg.IMAP.Listen, cfg.IMAP.ListenTLS},
		{"POP3", s.newPOP3(cfg, tlsc), cfg.POP3.Listen, cfg.POP3.ListenTLS},
		{"HTTP", s.newHTTP(cfg, tlsc), cfg.HTTP.Listen, cfg.HTTP.ListenTLS},
	} {
		if len(p.plain)+len(p.implicit) == 0 {
			continue
		}
		g.servers = append(g.servers, p.ps)
		for _, a := range p.plain {
			g.binds = append(g.binds, binding{p.name, p.ps, a, false})
		}
		for _, a := range p.implicit {
			if tlsc == nil {
				return nil, fmt.Errorf("%s on %s: implicit TLS needs [tls] cert and key", p.name, a)
			}
			g.binds = append(g.binds, binding{p.name + " (TLS)", p.ps, a, true})
		}
	}
	return g, nil
}

// activate points the listening addresses at gen's servers: it opens the
// new addresses (failing with nothing changed if one cannot be opened),
// hands every address to its new server, then retires the previous
// generation, whose sessions run on until their clients leave, and closes
// the addresses no longer configured.
func (s *server) activate(gen *generation) error {
	var opened []string
	fail := func(err error) error {
		for _, a := range opened {
			s.sockets[a].close()
			delete(s.sockets, a)
		}
		return err
	}
	used := map[string]bool{}
	for _, b := range gen.binds {
		key := b.key()
		if used[key] {
			return fail(fmt.Errorf("%s: address %s is configured twice", b.name, b.addr))
		}
		used[key] = true
		if s.sockets[key] != nil {
			continue
		}
		sock, err := openSocket(b.addr, s.log)
		if err != nil {
			return fail(fmt.Errorf("%s: %w", b.name, err))
		}
		s.sockets[key] = sock
		opened = append(opened, key)
	}
	var ports []string
	for _, b := range gen.binds {
		h := s.sockets[b.key()].attach()
		gen.handoffs = append(gen.handoffs, h)
		ports = append(ports, b.name+" "+h.Addr().String())
		serve := b.ps.Serve
		if b.implicitTLS {
			serve = b.ps.ServeTLS
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := serve(h); err != nil && !errors.Is(err, net.ErrClosed) && !s.closing.Load() {
				s.log.Error("listener stopped", "proto", b.name, "addr", h.Addr().String(), "err", err)
			}
		}()
	}
	if old := s.gen; old != nil {
		for _, h := range old.handoffs {
			h.Close()
		}
		s.retired = append(s.retired, old.servers...)
	}
	for a, sock := range s.sockets {
		if !used[a] {
			sock.close()
			delete(s.sockets, a)
		}
	}
	s.gen, s.ports = gen, ports
	return nil
}

// waitSignals blocks until ctx ends (SIGTERM, SIGINT); SIGHUP reloads.
func (s *server) waitSignals(ctx context.Context, reload func() error) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			s.log.Info("shutting down")
			return
		case <-hup:
			if err := reload(); err != nil {
				s.log.Error("reload failed; keeping the running configuration", "err", err)
			} else {
				s.log.Info("reloaded configuration and certificates")
			}
		}
	}
}

// reload applies a changed configuration: the certificate files and
// their contents, the log level, and every listener and protocol limit
// (new connections get servers built from the new configuration; open
// sessions finish under the old one). The data directory, the log format,
// the host name and the queue's settings need a restart, and say so.
func (s *server) reload(c *config.Config) error {
	c.Dev = s.cfg.Dev
	if c.Data != s.cfg.Data {
		return fmt.Errorf("the data directory changed (%s to %s): restart tern", s.cfg.Data, c.Data)
	}
	if c.TLS != s.cfg.TLS && c.TLS.Cert != "" {
		certs, err := tlsconf.NewReloader(c.Path(c.TLS.Cert), c.Path(c.TLS.Key))
		if err != nil {
			return err
		}
		s.certs = certs
	} else if s.certs != nil {
		if err := s.certs.Reload(); err != nil {
			return err
		}
	}
	var q *queue.Queue
	if c.Hostname != s.cfg.Hostname || fmt.Sprint(c.Queue) != fmt.Sprint(s.cfg.Queue) {
		var err error
		if q, err = newQueue(c, s.st, s.log.With("component", "queue")); err != nil {
			return err
		}
	}
	gen, err := s.build(c)
	if err != nil {
		return err
	}
	if err := s.activate(gen); err != nil {
		return err
	}
	if q != nil {
		s.runQueue(q)
	}
	s.level.Set(parseLevel(c.Log.Level))
	if c.Log.Format != s.cfg.Log.Format {
		s.log.Warn("a change of log format takes effect at the next restart")
	}
	s.cfg = c
	return nil
}

// stop shuts the listeners down gracefully (in-flight transactions finish
// or get 421), then the services, then the store.
func (s *server) stop() error {
	s.closing.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var errs []error
	var wg sync.WaitGroup
	var mu sync.Mutex
	servers := s.retired
	if s.gen != nil {
		for _, h := range s.gen.handoffs {
			h.Close()
		}
		servers = append(servers, s.gen.servers...)
	}
	for _, sock := range s.sockets {
		sock.close()
	}
	for _, ps := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := ps.Shutdown(ctx); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	s.wg.Wait()
	if rq := s.queue.cur.Load(); rq != nil {
		errs = append(errs, rq.stop(ctx))
	}
	for _, stop := range s.services {
		errs = append(errs, stop(ctx))
	}
	if s.st != nil {
		errs = append(errs, s.st.Close())
	}
	return errors.Join(errs...)
}
