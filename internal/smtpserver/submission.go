package smtpserver

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"time"

	gosasl "github.com/emersion/go-sasl"
	gosmtp "github.com/emersion/go-smtp"

	"github.com/tern-mail/tern/internal/sasl"
	"github.com/tern-mail/tern/internal/smtp"
)

// maxAuthFailures closes the connection after that many failed AUTHs.
const maxAuthFailures = 3

// AuthMechanisms lists the SASL mechanisms (RFC 4954). go-smtp shows them
// only on TLS or with InsecureAuth; inbound-only servers offer none.
func (s *session) AuthMechanisms() []string {
	if s.srv.cfg.Mode&Submission == 0 || s.srv.cfg.Accounts == nil {
		return nil
	}
	cs, isTLS := s.conn.TLSConnectionState()
	var csp *tls.ConnectionState
	if isTLS {
		csp = &cs
	}
	return sasl.Mechanisms(csp, isTLS || s.srv.cfg.InsecureAuth)
}

// Auth starts a SASL exchange (RFC 4954 §4).
func (s *session) Auth(mech string) (gosasl.Server, error) {
	if s.srv.cfg.Mode&Submission == 0 || s.srv.cfg.Accounts == nil {
		return nil, s.reply(&smtp.Reply{Code: 502, Enhanced: smtp.EnhancedCode{5, 5, 1}, Text: "AUTH not available on this port"})
	}
	cs, isTLS := s.conn.TLSConnectionState()
	opts := sasl.Options{Accounts: s.srv.cfg.Accounts, Certificate: s.leafCert()}
	if isTLS {
		opts.TLS = &cs
	}
	allowed := false
	for _, m := range s.AuthMechanisms() {
		allowed = allowed || m == mech
	}
	if !allowed {
		return nil, s.reply(&smtp.Reply{Code: 504, Enhanced: smtp.EnhancedCode{5, 5, 4}, Text: "unsupported authentication mechanism"})
	}
	srv, err := sasl.New(s.ctx, mech, opts)
	if err != nil {
		return nil, s.reply(&smtp.Reply{Code: 504, Enhanced: smtp.EnhancedCode{5, 5, 4}, Text: "unsupported authentication mechanism", Detail: err.Error()})
	}
	return &authExchange{s: s, srv: srv}, nil
}

func (s *session) leafCert() *x509.Certificate {
	cfg := s.srv.cfg.TLS
	if cfg == nil || len(cfg.Certificates) == 0 {
		return nil
	}
	if leaf := cfg.Certificates[0].Leaf; leaf != nil {
		return leaf
	}
	if len(cfg.Certificates[0].Certificate) > 0 {
		if c, err := x509.ParseCertificate(cfg.Certificates[0].Certificate[0]); err == nil {
			return c
		}
	}
	return nil
}

// authExchange adapts internal/sasl to go-smtp: it records the account on
// success and maps failures to RFC 4954 replies.
type authExchange struct {
	s   *session
	srv sasl.Server
}

func (a *authExchange) Next(response []byte) ([]byte, bool, error) {
	challenge, done, err := a.srv.Next(response)
	s := a.s
	switch {
	case err == nil && done:
		acct, ok := a.srv.Account()
		if !ok {
			return nil, false, s.reply(smtp.ErrLocal().WithDetail("sasl done without account"))
		}
		s.acct = &acct
		s.tc.note(func(tc *trackedConn) { tc.user = acct.Address })
		s.log = s.log.With("user", acct.Address)
		s.log.Info("smtp auth", "mech", a.srv.Mechanism())
		return challenge, true, s.reply(nil)
	case err == nil:
		return challenge, false, nil
	case errors.Is(err, sasl.ErrAuthFailed):
		s.authFailures++
		s.log.Info("smtp auth failed", "mech", a.srv.Mechanism(), "username", a.srv.Username())
		time.Sleep(s.srv.cfg.AuthFailDelay)
		r := &smtp.Reply{Code: 535, Enhanced: smtp.EnhancedCode{5, 7, 8}, Text: "authentication failed"}
		if s.authFailures >= maxAuthFailures {
			r.Close = true
		}
		return nil, false, s.reply(r)
	case errors.Is(err, sasl.ErrMalformed):
		return nil, false, s.reply(&smtp.Reply{Code: 501, Enhanced: smtp.EnhancedCode{5, 5, 2}, Text: "malformed authentication response"})
	default:
		return nil, false, s.reply(&smtp.Reply{Code: 454, Enhanced: smtp.EnhancedCode{4, 7, 0}, Text: "temporary authentication failure", Detail: err.Error()})
	}
}

// checkSender applies submission rules at MAIL: the envelope sender must be
// the account's (RFC 6409 §4.1 lets an MSA enforce it) and the account
// must be under its daily message limit.
func (s *session) checkSender(from smtp.Address) error {
	if from.IsNull() {
		return smtp.ErrNotOwner("the null sender")
	}
	owns, err := s.srv.cfg.Store.Owns(s.ctx, *s.acct, from.Canonical())
	if err != nil {
		return smtp.ErrLocal().WithDetail(err.Error())
	}
	if !owns {
		return smtp.ErrNotOwner("sender " + from.String())
	}
	n, err := s.srv.cfg.Store.SentToday(s.ctx, s.acct.ID, time.Now())
	if err != nil {
		return smtp.ErrLocal().WithDetail(err.Error())
	}
	if n >= s.limits().MessagesPerDay {
		return &smtp.Reply{Code: 451, Enhanced: smtp.EnhancedCode{4, 7, 1}, Text: "daily message limit reached, try again later"}
	}
	return nil
}

// submit stores a message from an authenticated account: header fixes
// (RFC 6409 §8), local recipients into their mailboxes, remote ones to the
// queue, all before the 250.
func (s *session) submit(tx *transaction, r io.Reader) error {
	br := bufio.NewReaderSize(r, 32<<10)
	hdr, err := readHeader(br, maxHeaderBytes)
	if err != nil {
		return err
	}
	fixed, info := fixHeader(hdr, headerFix{
		DefaultFrom: tx.from.String(),
		MessageID:   "<" + tx.id + "@" + s.srv.cfg.Hostname + ">",
		Date:        time.Now().Format(time.RFC1123Z),
	})
	for _, f := range info.From {
		owns, err := s.srv.cfg.Store.Owns(s.ctx, *s.acct, f)
		if err != nil {
			return smtp.ErrLocal().WithDetail(err.Error())
		}
		if !owns {
			return smtp.ErrNotOwner("From address " + f)
		}
	}
	if info.BadFrom {
		return &smtp.Reply{Code: 550, Enhanced: smtp.EnhancedCode{5, 6, 0}, Text: "unparsable From header"}
	}
	// A submission's Received field leaves out the client's address
	// (RFC 5321 §4.4 allows it; the user's network stays private).
	trace := smtp.Received(s.received(tx, false))
	prefix := append([]byte(trace), fixed...)
	sp, err := s.srv.del.Spool(s.ctx, prefix, br, s.srv.cfg.MaxMessageBytes)
	if err != nil {
		return err
	}
	tx.opts.Size = sp.Blob.Size
	committing := time.Now()
	tx.spoolTook = committing.Sub(tx.dataStart)
	defer func() { tx.commitTook = time.Since(committing) }()
	if len(tx.remote) > 0 {
		if _, err := s.srv.cfg.Queue.Enqueue(s.ctx, s.queueMessage(tx, sp.Blob)); err != nil {
			s.srv.del.Discard(s.ctx, sp)
			return smtp.ErrLocal().WithDetail("enqueue: " + err.Error())
		}
	}
	if _, err := s.srv.del.Store(s.ctx, sp, tx.accounts); err != nil {
		return err
	}
	s.notifyDelivered(tx, sp.Blob)
	if err := s.srv.cfg.Store.CountSent(s.ctx, s.acct.ID, time.Now(), 1); err != nil {
		s.srv.log.Warn("counting a submitted message", "account", s.acct.Address, "err", err)
	}
	return nil
}

var _ gosmtp.Session = (*session)(nil)
