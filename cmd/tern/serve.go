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
	servers  []protoServer
	queue    *queue.Queue
	services []func(ctx context.Context) error // stopped after the listeners
	ports    []string                          // "IMAP 127.0.0.1:2143", for dev
	wg       sync.WaitGroup
	closing  atomic.Bool
}

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
	s := &server{cfg: cfg, level: new(slog.LevelVar)}
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
	cfg := s.cfg
	tlsc := s.tlsConfig()
	queue, err := s.startQueue()
	if err != nil {
		return err
	}
	if err := s.startControl(); err != nil {
		return err
	}
	inbound := smtpserver.New(smtpserver.Config{
		Mode: smtpserver.Inbound, Store: s.st, Accounts: s.accts, Queue: queue, Hostname: cfg.Hostname, TLS: tlsc,
		Logger: s.log.With("proto", "smtp"), MaxMessageBytes: cfg.SMTP.MaxMessageBytes, MaxRecipients: cfg.SMTP.MaxRecipients,
		MaxConnsPerIP: cfg.SMTP.MaxConnsPerIP,
	})
	if err := s.listen("SMTP", inbound, cfg.SMTP.Listen, nil); err != nil {
		return err
	}
	submission := smtpserver.New(smtpserver.Config{
		Mode: smtpserver.Submission, Store: s.st, Accounts: s.accts, Queue: queue, Hostname: cfg.Hostname, TLS: tlsc,
		Logger: s.log.With("proto", "submission"), MaxMessageBytes: cfg.SMTP.MaxMessageBytes, MaxRecipients: cfg.Submission.MaxRecipients,
		InsecureAuth:  cfg.Dev,
		DefaultLimits: smtpserver.Limits{RecipientsPerMessage: cfg.Submission.MaxRecipients, MessagesPerDay: cfg.Submission.MaxPerDay},
	})
	if err := s.listen("submission", submission, cfg.Submission.Listen, cfg.Submission.ListenTLS); err != nil {
		return err
	}
	imap := imapserver.New(imapserver.Config{
		Store: s.st, Accounts: s.accts, TLS: tlsc, Logger: s.log, Hostname: cfg.Hostname, InsecureAuth: cfg.Dev,
	})
	if err := s.listen("IMAP", imap, cfg.IMAP.Listen, cfg.IMAP.ListenTLS); err != nil {
		return err
	}
	if err := s.startPOP3(tlsc); err != nil {
		return err
	}
	return s.startHTTP(tlsc)
}

// listen opens the plain and implicit-TLS addresses of one protocol.
func (s *server) listen(name string, ps protoServer, plain, implicit []string) error {
	if len(plain)+len(implicit) == 0 {
		return nil
	}
	s.servers = append(s.servers, ps)
	for i, addrs := range [][]string{plain, implicit} {
		for _, a := range addrs {
			l, err := net.Listen("tcp", a)
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			serve, label := ps.Serve, name
			if i == 1 {
				if s.certs == nil {
					l.Close()
					return fmt.Errorf("%s on %s: implicit TLS needs [tls] cert and key", name, a)
				}
				serve, label = ps.ServeTLS, name+" (TLS)"
			}
			s.ports = append(s.ports, label+" "+l.Addr().String())
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				if err := serve(l); err != nil && !errors.Is(err, net.ErrClosed) && !s.closing.Load() {
					s.log.Error("listener stopped", "proto", name, "addr", l.Addr().String(), "err", err)
				}
			}()
		}
	}
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

// reload applies what can change without a restart: the certificate and
// the log level. Listener addresses need a restart, and say so.
func (s *server) reload(c *config.Config) error {
	if s.certs != nil {
		if err := s.certs.Reload(); err != nil {
			return err
		}
	}
	s.level.Set(parseLevel(c.Log.Level))
	if fmt.Sprint(c.SMTP.Listen, c.Submission, c.IMAP, c.POP3, c.HTTP) != fmt.Sprint(s.cfg.SMTP.Listen, s.cfg.Submission, s.cfg.IMAP, s.cfg.POP3, s.cfg.HTTP) {
		s.log.Warn("listener or limit changes take effect at the next restart")
	}
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
	for _, ps := range s.servers {
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
	for _, stop := range s.services {
		errs = append(errs, stop(ctx))
	}
	if s.st != nil {
		errs = append(errs, s.st.Close())
	}
	return errors.Join(errs...)
}
