package main

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/tern-mail/tern/internal/config"
	"github.com/tern-mail/tern/internal/control"
	"github.com/tern-mail/tern/internal/dkim"
	"github.com/tern-mail/tern/internal/dns"
	"github.com/tern-mail/tern/internal/httpserver"
	"github.com/tern-mail/tern/internal/mtasts"
	"github.com/tern-mail/tern/internal/pop3server"
	"github.com/tern-mail/tern/internal/queue"
	"github.com/tern-mail/tern/internal/smtpserver"
	"github.com/tern-mail/tern/internal/store"
)

// newQueue builds the outbound queue from the configuration (without
// starting its delivery loop: admin commands use it too).
func newQueue(cfg *config.Config, st *store.Store, log *slog.Logger) (*queue.Queue, error) {
	res, err := dns.NewResolver(cfg.Queue.Resolver)
	if err != nil {
		return nil, err
	}
	qc := queue.Config{
		Store:    st,
		Resolver: res,
		MTASTS: &mtasts.Fetcher{Resolver: res, Cache: st, Client: &http.Client{
			Timeout:       time.Minute,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}},
		DKIM:         dkim.New(cfg.Data),
		Hostname:     cfg.Hostname,
		Logger:       log,
		Port:         cfg.Queue.Port,
		MaxLifetime:  cfg.Queue.Lifetime.Duration,
		DelayWarning: cfg.Queue.DelayWarning.Duration,
	}
	if sh := cfg.Queue.Smarthost; sh.Host != "" {
		qc.Smarthost = &queue.Smarthost{Host: sh.Host, Port: sh.Port, TLS: sh.TLS, Username: sh.Username, Password: sh.Password}
	}
	return queue.New(qc), nil
}

// queueDoor is where the SMTP servers and the control socket reach the
// outbound queue: the running one, which a reload may replace.
type queueDoor struct{ cur atomic.Pointer[runningQueue] }

type runningQueue struct {
	q    *queue.Queue
	stop func(ctx context.Context) error
}

func (d *queueDoor) Enqueue(ctx context.Context, m *smtpserver.QueueMessage) (int64, error) {
	return d.cur.Load().q.Enqueue(ctx, m)
}

func (d *queueDoor) Wake() { d.cur.Load().q.Wake() }

// runQueue starts outbound delivery through q in place of the running
// queue, if any, which finishes its deliveries in progress first.
func (s *server) runQueue(q *queue.Queue) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- q.Run(ctx) }()
	stop := func(stopCtx context.Context) error {
		cancel()
		select {
		case err := <-done:
			if errors.Is(err, context.Canceled) {
				return nil
			}
			return err
		case <-stopCtx.Done():
			return stopCtx.Err()
		}
	}
	if old := s.queue.cur.Swap(&runningQueue{q: q, stop: stop}); old != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := old.stop(ctx); err != nil {
			s.log.Warn("stopping the previous queue", "err", err)
		}
		q.Wake()
	}
}

// startControl serves the control socket through which admin commands
// tell this server about changes they made.
func (s *server) startControl() error {
	c, err := control.Listen(s.cfg.Data, control.Handler{
		WakeQueue:      s.queue.Wake,
		AccountChanged: s.st.NotifyAccount,
	}, s.log.With("component", "control"))
	if err != nil {
		if strings.Contains(err.Error(), "another tern") {
			return err
		}
		s.log.Warn("no control socket: admin changes reach this server by polling only", "err", err)
		return nil
	}
	s.services = append(s.services, func(context.Context) error { return c.Close() })
	return nil
}

// newPOP3 makes the POP3 server.
func (s *server) newPOP3(c *config.Config, tlsc *tls.Config) protoServer {
	return pop3server.New(pop3server.Config{
		Store: s.st, Accounts: s.accts, TLS: tlsc, Logger: s.log, Hostname: c.Hostname,
		InsecureAuth: c.Dev, MarkSeenOnRetr: config.Flag(c.POP3.MarkSeenOnRetr, true), Locks: s.pop3Lock,
	})
}

// newHTTP makes the web endpoints' server.
func (s *server) newHTTP(c *config.Config, tlsc *tls.Config) protoServer {
	return httpserver.New(httpserver.Config{
		Store: s.st, Hostname: c.Hostname, Logger: s.log.With("proto", "http"), TLS: tlsc, MTASTSMode: c.HTTP.MTASTSMode,
		Ports: httpserver.Ports{
			IMAP: firstPort(c.IMAP.Listen), IMAPS: firstPort(c.IMAP.ListenTLS),
			POP3: firstPort(c.POP3.Listen), POP3S: firstPort(c.POP3.ListenTLS),
			Submission: firstPort(c.Submission.Listen), Submissions: firstPort(c.Submission.ListenTLS),
		},
	})
}

// firstPort is the port of the first address of a list (0 if none): what
// autoconfiguration advertises to clients.
func firstPort(addrs []string) int {
	if len(addrs) == 0 {
		return 0
	}
	_, p, _ := net.SplitHostPort(addrs[0])
	n, _ := strconv.Atoi(p)
	return n
}
