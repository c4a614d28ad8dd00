package pop3server

import (
	"crypto/x509"
	"encoding/base64"
	"errors"
	"strings"
	"time"

	"github.com/tern-mail/tern/internal/account"
	"github.com/tern-mail/tern/internal/sasl"
	"github.com/tern-mail/tern/internal/store"
)

// handler runs one command and returns its reply.
type handler struct {
	fn               func(*session, Command) reply
	states           state
	minArgs, maxArgs int
}

// commandTable is the state table: which commands each state allows, and
// their argument counts (RFC 1939 §4-7, RFC 2449 §5, RFC 2595 §4, RFC
// 5034 §4). It is never modified.
var commandTable = map[string]handler{
	"CAPA": {(*session).cmdCapa, stateAuthorization | stateTransaction, 0, 0},
	"QUIT": {(*session).cmdQuit, stateAuthorization | stateTransaction, 0, 0},
	"NOOP": {(*session).cmdNoop, stateAuthorization | stateTransaction, 0, 0},
	"STLS": {(*session).cmdStls, stateAuthorization, 0, 0},
	"USER": {(*session).cmdUser, stateAuthorization, 1, 1},
	"PASS": {(*session).cmdPass, stateAuthorization, 1, 1},
	"AUTH": {(*session).cmdAuth, stateAuthorization, 0, 2},
	"STAT": {(*session).cmdStat, stateTransaction, 0, 0},
	"LIST": {(*session).cmdList, stateTransaction, 0, 1},
	"UIDL": {(*session).cmdUidl, stateTransaction, 0, 1},
	"RETR": {(*session).cmdRetr, stateTransaction, 1, 1},
	"TOP":  {(*session).cmdTop, stateTransaction, 2, 2},
	"DELE": {(*session).cmdDele, stateTransaction, 1, 1},
	"RSET": {(*session).cmdRset, stateTransaction, 0, 0},
}

// cmdCapa lists capabilities (RFC 2449 §5); they depend on the state and
// on TLS.
func (s *session) cmdCapa(Command) reply {
	caps := []string{"TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"}
	if s.state == stateAuthorization {
		if s.plaintextOK() {
			caps = append(caps, "USER")
		}
		caps = append(caps, "SASL "+strings.Join(s.mechanisms(), " "))
		if s.tls == nil && s.srv.cfg.TLS != nil {
			caps = append(caps, "STLS")
		}
	}
	caps = append(caps, "IMPLEMENTATION tern")
	return multiReply("capability list follows", caps)
}

func (s *session) mechanisms() []string { return sasl.Mechanisms(s.tls, s.plaintextOK()) }

func (s *session) cmdNoop(Command) reply { return okReply("") }

func (s *session) cmdQuit(Command) reply {
	if s.state == stateTransaction {
		return s.update()
	}
	r := okReply(s.srv.cfg.Hostname + " POP3 server signing off")
	r.close = true
	return r
}

// cmdStls starts TLS (RFC 2595 §4).
func (s *session) cmdStls(Command) reply {
	if s.srv.cfg.TLS == nil {
		return badReply("STLS is not available")
	}
	if s.tls != nil {
		return badReply("TLS is already active")
	}
	if s.br.Buffered() > 0 {
		// Commands pipelined after STLS would be read as if they had come
		// over TLS: refuse (the injection of CVE-2011-0411).
		r := errReply("", "nothing may follow STLS before the TLS handshake")
		r.close = true
		return r
	}
	return reply{ok: true, text: "begin TLS negotiation", tls: true}
}

func (s *session) cmdUser(c Command) reply {
	if !s.plaintextOK() {
		return errReply("", "USER/PASS needs TLS first: use STLS, or AUTH SCRAM-SHA-256")
	}
	s.user = c.Args[0]
	return okReply("send PASS")
}

func (s *session) cmdPass(c Command) reply {
	if !s.plaintextOK() {
		return errReply("", "USER/PASS needs TLS first: use STLS, or AUTH SCRAM-SHA-256")
	}
	if s.user == "" {
		return badReply("send USER first")
	}
	user := s.user
	s.user = ""
	ctx, cancel := s.storeCtx()
	defer cancel()
	acct, err := s.srv.cfg.Accounts.Authenticate(ctx, user, c.Args[0])
	if err != nil {
		if errors.Is(err, account.ErrAuthFailed) || errors.Is(err, store.ErrNotFound) {
			err = sasl.ErrAuthFailed
		}
		return s.authFailed(user, "PASS", err)
	}
	return s.login(acct, "PASS")
}

// cmdAuth starts a SASL exchange (RFC 5034 §4). Without a mechanism it
// lists the mechanisms, as many clients expect.
func (s *session) cmdAuth(c Command) reply {
	if len(c.Args) == 0 {
		return multiReply("SASL mechanisms follow", s.mechanisms())
	}
	mech := strings.ToUpper(c.Args[0])
	allowed := false
	for _, m := range s.mechanisms() {
		allowed = allowed || m == mech
	}
	if !allowed {
		return errReply("", "unsupported SASL mechanism "+mech)
	}
	srv, err := sasl.New(s.ctx, mech, sasl.Options{Accounts: s.srv.cfg.Accounts, TLS: s.tls, Certificate: s.certificate()})
	if err != nil {
		return errReply("", "unsupported SASL mechanism "+mech)
	}
	var ir []byte
	if len(c.Args) == 2 {
		if c.Args[1] == "=" {
			ir = []byte{} // RFC 5034 §4: "=" is an empty initial response
		} else if ir, err = base64.StdEncoding.DecodeString(c.Args[1]); err != nil {
			return badReply("initial response is not base64")
		}
	}
	s.auth = srv
	return s.saslNext(ir)
}

// certificate is our leaf for tls-server-end-point, when unambiguous.
func (s *session) certificate() *x509.Certificate {
	cfg := s.srv.cfg.TLS
	if s.tls == nil || cfg == nil || len(cfg.Certificates) != 1 || cfg.GetCertificate != nil {
		return nil
	}
	c := cfg.Certificates[0]
	if c.Leaf != nil {
		return c.Leaf
	}
	if len(c.Certificate) > 0 {
		if leaf, err := x509.ParseCertificate(c.Certificate[0]); err == nil {
			return leaf
		}
	}
	return nil
}

// saslLine handles a client line during an AUTH exchange.
func (s *session) saslLine(line []byte) reply {
	// RFC 5034 §4: "*" cancels.
	if string(line) == "*" {
		s.auth = nil
		return errReply("", "AUTH canceled")
	}
	resp, err := base64.StdEncoding.DecodeString(string(line))
	if err != nil {
		s.auth = nil
		return badReply("SASL response is not base64; AUTH canceled")
	}
	if resp == nil {
		resp = []byte{}
	}
	return s.saslNext(resp)
}

func (s *session) saslNext(resp []byte) reply {
	ch, done, err := s.auth.Next(resp)
	if err != nil {
		user := s.auth.Username()
		s.auth = nil
		if errors.Is(err, sasl.ErrMalformed) {
			return badReply("malformed SASL response; AUTH canceled")
		}
		return s.authFailed(user, "AUTH", err)
	}
	if !done {
		return reply{cont: true, text: base64.StdEncoding.EncodeToString(ch)}
	}
	acct, ok := s.auth.Account()
	mech := s.auth.Mechanism()
	s.auth = nil
	if !ok {
		return s.authFailed("", "AUTH", sasl.ErrAuthFailed)
	}
	return s.login(acct, mech)
}

// authFailed answers a failed login after a delay (RFC 2449 §8.3:
// [AUTH] for credentials, [SYS/TEMP] for our own trouble).
func (s *session) authFailed(user, how string, err error) reply {
	if sasl.IsTemporary(err) {
		s.log.Error("pop3: login failed on a server error", "user", user, "err", err)
		return errReply("SYS/TEMP", "temporary server failure, try again later")
	}
	s.authFails++
	s.log.Info("pop3: login failed", "user", user, "method", how)
	time.Sleep(s.srv.cfg.AuthFailDelay)
	r := errReply("AUTH", "invalid user name or password")
	if s.authFails >= maxAuthFailures {
		r.text += "; too many failures, closing connection"
		r.close = true
	}
	return r
}

// login moves an authenticated session to the TRANSACTION state (RFC
// 1939 §4): lock the maildrop, snapshot the INBOX.
func (s *session) login(acct store.Account, how string) reply {
	if !s.srv.lock(acct.ID) {
		s.log.Info("pop3: maildrop in use", "user", acct.Address)
		return errReply("IN-USE", "another POP3 session of this account is active")
	}
	ctx, cancel := s.storeCtx()
	defer cancel()
	drop, err := loadMaildrop(ctx, s.srv.cfg.Store, s.srv.listings, acct.ID)
	if err != nil {
		s.srv.unlock(acct.ID)
		s.log.Error("pop3: loading maildrop", "user", acct.Address, "err", err)
		return errReply("SYS/TEMP", "cannot open the mailbox now, try again later")
	}
	s.acct, s.locked, s.drop = acct, true, drop
	s.ahead = newReadAhead(s.srv.readAhead, &s.srv.downloads)
	s.state = stateTransaction
	s.log = s.log.With("user", acct.Address)
	s.log.Info("pop3: login", "method", how, "messages", len(drop.msgs))
	return okReply("logged in, " + itoa(int64(len(drop.msgs))) + " messages")
}
