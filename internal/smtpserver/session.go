package smtpserver

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base32"
	"errors"
	"io"
	"log/slog"
	"strings"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"github.com/tern-mail/tern/internal/smtp"
	"github.com/tern-mail/tern/internal/store"
)

// session is one SMTP session (go-smtp starts a new one after STARTTLS).
// Each method returns a reply value through s.reply, which counts errors
// and commands and converts the reply for go-smtp.
type session struct {
	srv  *Server
	conn *gosmtp.Conn
	tc   *trackedConn
	log  *slog.Logger
	ctx  context.Context

	acct         *store.Account // set by a successful AUTH
	authFailures int
	tx           *transaction
}

// transaction is the envelope of one MAIL..DATA exchange.
type transaction struct {
	id       string
	start    time.Time
	from     smtp.Address
	opts     gosmtp.MailOptions
	rcpts    []recipient
	accounts []store.Account // local accounts, all recipients together
	remote   []QueueRecipient

	dataStart  time.Time     // DATA/first BDAT began
	spoolTook  time.Duration // body read, blob written and fsynced, parsed
	commitTook time.Duration // queue and store commits
}

// recipient is one accepted RCPT with its DSN parameters (RFC 3461).
type recipient struct {
	addr   smtp.Address
	notify []string
	orcpt  string
	local  bool
}

var _ gosmtp.AuthSession = (*session)(nil)

func (s *Server) newSession(c *gosmtp.Conn) (gosmtp.Session, error) {
	raw := c.Conn()
	if t, ok := raw.(*tls.Conn); ok {
		raw = t.NetConn()
	}
	tc, ok := raw.(*trackedConn)
	if !ok {
		return nil, errors.New("smtpserver: connection not from this server")
	}
	tlsInfo := ""
	if cs, ok := c.TLSConnectionState(); ok {
		tlsInfo = tls.VersionName(cs.Version) + " " + tls.CipherSuiteName(cs.CipherSuite)
	}
	tc.note(func(tc *trackedConn) { tc.helo, tc.tls = c.Hostname(), tlsInfo })
	return &session{
		srv: s, conn: c, tc: tc, ctx: context.Background(),
		log: s.log.With("conn", tc.id, "remote", tc.RemoteAddr().String()),
	}, nil
}

// reply converts a handler's result for go-smtp: it counts the command and
// the error, turns a smtp.Reply into go-smtp's SMTPError, closes the
// connection after a Close reply, and replaces the reply by 421 once the
// connection made too many errors or commands.
func (s *session) reply(err error) error {
	var tooMany *smtp.Reply
	s.tc.note(func(tc *trackedConn) {
		tc.commands++
		if err != nil {
			tc.errors++
		}
		switch {
		case err != nil && tc.errors > s.srv.cfg.MaxErrors:
			tooMany = smtp.ErrTooManyErrors()
		case tc.commands > s.srv.cfg.MaxCommands:
			tooMany = smtp.ErrTooManyCommands()
		}
	})
	if tooMany != nil {
		if err != nil {
			s.log.Debug("smtp error", "err", err)
		}
		err = tooMany
	}
	if err == nil {
		return nil
	}
	var r *smtp.Reply
	var ge *gosmtp.SMTPError
	switch {
	case errors.As(err, &r):
	case errors.As(err, &ge):
		return ge
	case errors.Is(err, gosmtp.ErrDataReset):
		return err
	default:
		r = smtp.ErrLocal().WithDetail(err.Error())
	}
	if r.Detail != "" || r.Code/100 == 4 {
		s.log.Info("smtp reply", "code", r.Code, "enhanced", r.Enhanced.String(), "text", r.Text, "detail", r.Detail)
	}
	if r.Close {
		s.tc.closeAfterReply()
	}
	return &gosmtp.SMTPError{Code: r.Code, EnhancedCode: gosmtp.EnhancedCode(r.Enhanced), Message: r.Text}
}

// Reset ends the transaction (RSET, after DATA, a new EHLO).
func (s *session) Reset() {
	s.tx = nil
	s.tc.setInTx(false)
}

// Logout ends the session.
func (s *session) Logout() error {
	s.tx = nil
	s.tc.setInTx(false)
	return nil
}

// Mail starts a transaction. RFC 5321 §4.1.1.2.
func (s *session) Mail(from string, opts *gosmtp.MailOptions) error {
	return s.reply(s.mail(from, opts))
}

func (s *session) mail(from string, opts *gosmtp.MailOptions) error {
	if !s.tc.setInTx(true) {
		return smtp.ErrShuttingDown()
	}
	var addr smtp.Address
	if from != "" {
		a, err := smtp.ParseMailbox(from, opts.UTF8)
		if err != nil {
			return senderSyntax(err)
		}
		addr = a
	}
	if s.acct != nil {
		if err := s.checkSender(addr); err != nil {
			return err
		}
	} else if s.srv.cfg.Mode&Inbound == 0 {
		return smtp.ErrAuthRequired()
	}
	s.tx = &transaction{id: newID(), start: time.Now(), from: addr, opts: *opts}
	return nil
}

// senderSyntax turns an address error into the sender's code (X.1.7).
func senderSyntax(err error) error {
	var r *smtp.Reply
	if errors.As(err, &r) && r.Enhanced == (smtp.EnhancedCode{5, 1, 3}) {
		c := *r
		c.Enhanced = smtp.EnhancedCode{5, 1, 7}
		return &c
	}
	return err
}

// Rcpt checks one recipient at once. RFC 5321 §4.1.1.3.
func (s *session) Rcpt(to string, opts *gosmtp.RcptOptions) error {
	return s.reply(s.rcpt(to, opts))
}

func (s *session) rcpt(to string, opts *gosmtp.RcptOptions) error {
	tx := s.tx
	if tx == nil {
		return smtp.ErrBadSequence("need MAIL before RCPT")
	}
	addr, err := smtp.ParseMailbox(to, tx.opts.UTF8)
	if err != nil {
		return err
	}
	if max := s.maxRecipients(); len(tx.rcpts) >= max {
		return smtp.ErrTooManyRecipients()
	}
	r := recipient{addr: addr, orcpt: orcpt(opts)}
	for _, n := range opts.Notify {
		r.notify = append(r.notify, string(n))
	}
	local, err := s.srv.del.IsLocal(s.ctx, addr.Domain)
	if err != nil {
		return err
	}
	if !local {
		if s.acct == nil {
			return smtp.ErrRelayDenied().WithDetail(addr.String())
		}
		if s.srv.cfg.Queue == nil {
			return smtp.ErrLocal().WithDetail("no outbound queue configured")
		}
		tx.remote = append(tx.remote, QueueRecipient{Address: addr.String(), Notify: r.notify, ORcpt: r.orcpt})
		tx.rcpts = append(tx.rcpts, r)
		return nil
	}
	res, err := s.srv.del.Lookup(s.ctx, addr, tx.opts.Size)
	if err != nil {
		return err
	}
	if len(res.Remote) > 0 && s.srv.cfg.Queue == nil {
		if len(res.Accounts) == 0 {
			return smtp.ErrLocal().WithDetail("alias points outside and no outbound queue is configured")
		}
		s.log.Warn("alias targets outside dropped: no queue", "rcpt", addr.String(), "targets", res.Remote)
		res.Remote = nil
	}
	// A forwarded copy names the address the sender used (RFC 3461
	// §4.2), so that a bounce from far away says what it is about.
	forwardedFor := r.orcpt
	if forwardedFor == "" {
		forwardedFor = "rfc822;" + addr.String()
	}
	for _, ra := range res.Remote {
		tx.remote = append(tx.remote, QueueRecipient{Address: ra, Notify: r.notify, ORcpt: forwardedFor})
	}
	r.local = true
	tx.accounts = append(tx.accounts, res.Accounts...)
	tx.rcpts = append(tx.rcpts, r)
	return nil
}

func orcpt(opts *gosmtp.RcptOptions) string {
	if opts.OriginalRecipient == "" {
		return ""
	}
	return string(opts.OriginalRecipientType) + ";" + opts.OriginalRecipient
}

func (s *session) maxRecipients() int {
	if s.acct != nil {
		return s.limits().RecipientsPerMessage
	}
	return s.srv.cfg.MaxRecipients
}

func (s *session) limits() Limits {
	if s.srv.cfg.LimitsFor != nil && s.acct != nil {
		l := s.srv.cfg.LimitsFor(*s.acct)
		if l.RecipientsPerMessage <= 0 {
			l.RecipientsPerMessage = s.srv.cfg.DefaultLimits.RecipientsPerMessage
		}
		if l.MessagesPerDay <= 0 {
			l.MessagesPerDay = s.srv.cfg.DefaultLimits.MessagesPerDay
		}
		return l
	}
	return s.srv.cfg.DefaultLimits
}

// Data receives the message (DATA or the BDAT chunks) and replies only
// once it is durable. RFC 5321 §4.1.1.4, RFC 3030.
func (s *session) Data(r io.Reader) error {
	tx := s.tx
	if tx == nil {
		io.Copy(io.Discard, r)
		return s.reply(smtp.ErrBadSequence("need MAIL and RCPT before DATA"))
	}
	tx.dataStart = time.Now()
	var err error
	if s.acct != nil {
		err = s.submit(tx, r)
	} else {
		err = s.inbound(tx, r)
	}
	s.logDelivery(tx, err)
	if err == nil {
		s.tc.note(func(tc *trackedConn) { tc.messages++ })
	}
	return s.reply(err)
}

func (s *session) logDelivery(tx *transaction, err error) {
	rcpts := make([]string, len(tx.rcpts))
	for i, r := range tx.rcpts {
		rcpts[i] = r.addr.String()
	}
	result := "250 ok"
	if err != nil {
		result = err.Error()
	}
	s.log.Info("smtp delivery", "id", tx.id, "from", tx.from.String(), "rcpts", rcpts, "size", tx.size(),
		"envid", tx.opts.EnvelopeID, "ret", string(tx.opts.Return),
		"result", result, "took", time.Since(tx.start).Round(time.Microsecond),
		"spool", tx.spoolTook.Round(time.Microsecond), "commit", tx.commitTook.Round(time.Microsecond))
}

func (tx *transaction) size() int64 { return tx.opts.Size }

// received builds this hop's trace fields for the transaction.
func (s *session) received(tx *transaction, withIP bool) smtp.ReceivedInfo {
	cs, isTLS := s.conn.TLSConnectionState()
	info := smtp.ReceivedInfo{
		By: s.srv.cfg.Hostname, ID: tx.id, Time: time.Now(),
		With: smtp.Protocol(true, isTLS, s.acct != nil, tx.opts.UTF8),
	}
	if isTLS {
		info.TLS = tls.VersionName(cs.Version) + " " + tls.CipherSuiteName(cs.CipherSuite)
	}
	// A submission's trace names neither the client's address nor its
	// EHLO word (a laptop's host name is as private as its address).
	if withIP {
		info.Helo = s.conn.Hostname()
		if s.tc.ip.IsValid() {
			info.IP = s.tc.ip.String()
			if s.tc.ip.Is6() {
				info.IP = "IPv6:" + info.IP // RFC 5321 §4.1.3
			}
		}
	}
	if len(tx.rcpts) == 1 {
		info.For = tx.rcpts[0].addr.String()
	}
	return info
}

// inbound delivers to local accounts (and forwards alias targets that
// point outside through the queue).
func (s *session) inbound(tx *transaction, r io.Reader) error {
	trace := s.tracePrefix(tx, true)
	sp, err := s.srv.del.Spool(s.ctx, trace, r, s.srv.cfg.MaxMessageBytes)
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
	return nil
}

// tracePrefix is the Return-Path and Received header for final delivery.
func (s *session) tracePrefix(tx *transaction, withIP bool) []byte {
	return []byte(smtp.ReturnPath(tx.from) + smtp.Received(s.received(tx, withIP)))
}

func (s *session) queueMessage(tx *transaction, blob store.Blob) *QueueMessage {
	m := &QueueMessage{
		From: tx.from.String(), Recipients: tx.remote, EnvID: tx.opts.EnvelopeID,
		Ret: string(tx.opts.Return), RequireTLS: tx.opts.RequireTLS, Blob: blob,
	}
	if s.acct != nil {
		m.AccountID = s.acct.ID
	}
	return m
}

// newID is a short random message id for trace headers and logs.
func newID() string {
	var b [10]byte
	rand.Read(b[:])
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
}
