package imapserver

import (
	"compress/flate"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/tern-mail/tern/internal/account"
	"github.com/tern-mail/tern/internal/imap"
	"github.com/tern-mail/tern/internal/sasl"
	"github.com/tern-mail/tern/internal/store"
)

// authAllowed: RFC 9051 §6.2.3: no plaintext passwords without TLS, except
// where the operator allowed it (tern dev on loopback).
func (s *session) authAllowed() bool { return s.tls != nil || s.srv.cfg.InsecureAuth }

func (s *session) capabilities() string {
	var b strings.Builder
	b.WriteString("IMAP4rev1 IMAP4rev2")
	if s.state == stateNotAuth {
		if s.tls == nil && s.srv.cfg.TLS != nil {
			b.WriteString(" STARTTLS")
		}
		if s.authAllowed() {
			b.WriteString(" AUTH=PLAIN AUTH=SCRAM-SHA-256")
			if sasl.PlusAvailable(s.tls) {
				b.WriteString(" AUTH=SCRAM-SHA-256-PLUS")
			}
		} else {
			b.WriteString(" LOGINDISABLED")
		}
	}
	b.WriteString(" SASL-IR LITERAL+ ID ENABLE IDLE NAMESPACE UIDPLUS MOVE UNSELECT CHILDREN" +
		" SPECIAL-USE CREATE-SPECIAL-USE LIST-EXTENDED LIST-STATUS STATUS=SIZE ESEARCH SEARCHRES" +
		" CONDSTORE QRESYNC SORT THREAD=REFERENCES THREAD=ORDEREDSUBJECT QUOTA QUOTA=RES-STORAGE" +
		" MULTIAPPEND BINARY UTF8=ACCEPT")
	if !s.compressed {
		b.WriteString(" COMPRESS=DEFLATE")
	}
	b.WriteString(" APPENDLIMIT=")
	b.WriteString(strconv.FormatInt(s.srv.cfg.AppendLimit, 10))
	return b.String()
}

func (s *session) cmdCapability(cmd *imap.Command) reply {
	s.w.Raw("* CAPABILITY ").Raw(s.capabilities()).CRLF()
	return ok("CAPABILITY completed")
}

func (s *session) cmdID(cmd *imap.Command) reply {
	// RFC 2971 §3.3.
	s.w.Raw(`* ID ("name" "tern" "vendor" "tern-mail")`).CRLF()
	return ok("ID completed")
}

func (s *session) cmdNamespace(cmd *imap.Command) reply {
	// RFC 2342: one personal namespace, "/" separator.
	s.w.Raw(`* NAMESPACE (("" "/")) NIL NIL`).CRLF()
	return ok("NAMESPACE completed")
}

func (s *session) cmdEnable(cmd *imap.Command) reply {
	args := cmd.Args.(*imap.EnableArgs)
	var enabled []string
	for _, c := range args.Caps {
		switch c {
		case "CONDSTORE":
			if !s.condstore {
				s.condstore = true
				enabled = append(enabled, c)
			}
		case "QRESYNC":
			if !s.qresync {
				// RFC 7162 §3.2.3: QRESYNC implies CONDSTORE.
				s.qresync, s.condstore = true, true
				enabled = append(enabled, c)
			}
		case "IMAP4REV2":
			if !s.rev2 {
				s.rev2, s.utf8 = true, true
				enabled = append(enabled, "IMAP4rev2")
			}
		case "UTF8=ACCEPT":
			if !s.utf8 {
				s.utf8 = true
				enabled = append(enabled, c)
			}
		}
	}
	s.w.UTF8 = s.utf8
	if s.sel != nil {
		s.sel.condstore = s.sel.condstore || s.condstore
	}
	s.w.Raw("* ENABLED")
	for _, e := range enabled {
		s.w.SP().Raw(e)
	}
	s.w.CRLF()
	return ok("ENABLE completed")
}

func (s *session) cmdStartTLS(cmd *imap.Command) reply {
	if s.srv.cfg.TLS == nil {
		return bad("STARTTLS not available")
	}
	if s.tls != nil {
		return bad("TLS already active")
	}
	s.writeTagged(cmd.Tag, ok("Begin TLS negotiation now"))
	if s.flush() != nil {
		return reply{bye: true, status: "BAD"}
	}
	// RFC 9051 §6.2.1: anything the client pipelined before the handshake
	// is discarded (command injection defence): the reader is reset below.
	tc := tls.Server(s.conn, s.srv.cfg.TLS)
	tc.SetDeadline(time.Now().Add(30 * time.Second))
	if err := tc.Handshake(); err != nil {
		s.log.Debug("starttls handshake", "err", err)
		return reply{bye: true, status: "BAD", text: "TLS handshake failed"}
	}
	tc.SetDeadline(time.Time{})
	st := tc.ConnectionState()
	s.setConn(tc, &st)
	return reply{status: "", bye: false}
}

func (s *session) authFailed() reply {
	if d := s.srv.cfg.AuthFailDelay; d > 0 {
		time.Sleep(d)
	}
	return no("AUTHENTICATIONFAILED", "Invalid credentials")
}

func (s *session) cmdLogin(cmd *imap.Command) reply {
	if !s.authAllowed() {
		return no("PRIVACYREQUIRED", "LOGIN needs TLS (use STARTTLS)")
	}
	args := cmd.Args.(*imap.LoginArgs)
	acct, err := s.srv.cfg.Accounts.Authenticate(s.ctx, args.User, args.Pass)
	if err != nil {
		if errors.Is(err, account.ErrAuthFailed) || errors.Is(err, store.ErrNotFound) {
			s.log.Info("login failed", "user", args.User)
			return s.authFailed()
		}
		s.log.Error("login", "user", args.User, "err", err)
		return no("UNAVAILABLE", "Temporary failure, try again")
	}
	return s.loggedInAs(acct)
}

func (s *session) loggedInAs(acct store.Account) reply {
	if !s.srv.addUser(acct.ID) {
		return no("LIMIT", "Too many sessions for this account")
	}
	s.acct = acct
	s.loggedIn = true
	s.state = stateAuth
	s.watcher = s.srv.cfg.Store.Watch(acct.ID)
	s.log = s.log.With("user", acct.Address)
	s.log.Info("login")
	return okCode("CAPABILITY "+s.capabilities(), "Logged in")
}

func (s *session) cmdAuthenticate(cmd *imap.Command) reply {
	args := cmd.Args.(*imap.AuthenticateArgs)
	if !s.authAllowed() && args.Mechanism != sasl.ScramSHA256 {
		return no("PRIVACYREQUIRED", "Authentication needs TLS (use STARTTLS)")
	}
	opts := sasl.Options{Accounts: s.srv.cfg.Accounts, TLS: s.tls}
	if s.tls != nil {
		opts.Certificate = s.leafCertificate()
	}
	srv, err := sasl.New(s.ctx, args.Mechanism, opts)
	if err != nil {
		return no("CANNOT", "Unsupported mechanism")
	}
	resp := args.Initial
	if !args.HasInitial {
		if resp, err = s.saslRound(nil); err != nil {
			return s.saslError(err)
		}
	}
	for i := 0; i < 10; i++ {
		chal, done, err := srv.Next(resp)
		if err != nil {
			return s.saslError(err)
		}
		if done {
			acct, okAcct := srv.Account()
			if !okAcct {
				return s.authFailed()
			}
			return s.loggedInAs(acct)
		}
		if resp, err = s.saslRound(chal); err != nil {
			return s.saslError(err)
		}
	}
	return bad("SASL exchange too long")
}

var errSASLCancel = errors.New("authentication cancelled")

// saslRound sends a challenge and reads the client's answer line.
func (s *session) saslRound(chal []byte) ([]byte, error) {
	s.w.Raw("+ ").Raw(base64.StdEncoding.EncodeToString(chal)).CRLF()
	if err := s.flush(); err != nil {
		return nil, err
	}
	s.setReadDeadline(5 * time.Minute)
	line, err := imap.ReadLine(s.br, 16<<10)
	if err != nil {
		return nil, err
	}
	data, cancel, err := imap.DecodeSASLLine(line)
	if cancel {
		return nil, errSASLCancel
	}
	if err != nil {
		return nil, sasl.ErrMalformed
	}
	return data, nil
}

func (s *session) saslError(err error) reply {
	switch {
	case errors.Is(err, errSASLCancel):
		return bad("Authentication cancelled")
	case errors.Is(err, sasl.ErrMalformed):
		return bad("Malformed SASL response")
	case errors.Is(err, sasl.ErrAuthFailed), errors.Is(err, account.ErrAuthFailed):
		return s.authFailed()
	case errors.Is(err, imap.ErrLineTooLong):
		return bad("SASL response too long")
	}
	var ne net.Error
	if errors.As(err, &ne) || errors.Is(err, io.EOF) {
		return reply{status: "BAD", text: "connection error", bye: true}
	}
	s.log.Error("authenticate", "err", err)
	return no("UNAVAILABLE", "Temporary failure, try again")
}

func (s *session) leafCertificate() *x509.Certificate {
	cfg := s.srv.cfg.TLS
	if cfg == nil || len(cfg.Certificates) == 0 || len(cfg.Certificates[0].Certificate) == 0 {
		return nil
	}
	if leaf := cfg.Certificates[0].Leaf; leaf != nil {
		return leaf
	}
	leaf, err := x509.ParseCertificate(cfg.Certificates[0].Certificate[0])
	if err != nil {
		return nil
	}
	return leaf
}

// cmdCompress starts RFC 4978 DEFLATE compression after the tagged OK.
func (s *session) cmdCompress(cmd *imap.Command) reply {
	if cmd.Args.(*imap.CompressArgs).Mechanism != "DEFLATE" {
		return bad("Unknown compression mechanism")
	}
	if s.compressed {
		return no("COMPRESSIONACTIVE", "Compression already active")
	}
	s.writeTagged(cmd.Tag, ok("DEFLATE active"))
	if s.flush() != nil {
		return reply{bye: true}
	}
	dc := newDeflateConn(s.conn)
	s.compressed = true
	s.conn = dc
	s.br.Reset(dc)
	s.bw.Reset(dc)
	return reply{}
}

// deflateConn compresses a connection (RFC 4978: raw DEFLATE, RFC 1951).
// Writes use compress/flate with a sync flush per response; reads use the
// inflater of inflate.go, which never holds back decoded bytes.
type deflateConn struct {
	net.Conn
	r     io.Reader
	fw    *flate.Writer
	dirty bool // written since the last flush
}

func newDeflateConn(c net.Conn) *deflateConn {
	fw, _ := flate.NewWriter(c, flate.DefaultCompression)
	return &deflateConn{Conn: c, r: newInflater(&byteReader{r: c}), fw: fw}
}

func (d *deflateConn) Read(p []byte) (int, error) { return d.r.Read(p) }
func (d *deflateConn) Write(p []byte) (int, error) {
	d.dirty = d.dirty || len(p) > 0
	return d.fw.Write(p)
}

// FlushCompressed ends the output with a sync flush so the client can
// decode everything sent so far. Nothing is sent when nothing was written:
// some clients (mbsync) take a read that inflates to nothing for a
// closed stream.
func (d *deflateConn) FlushCompressed() error {
	if !d.dirty {
		return nil
	}
	d.dirty = false
	return d.fw.Flush()
}

// byteReader buffers the compressed input and tells the inflater whether
// more has arrived (Buffered), so it can return output before blocking.
type byteReader struct {
	r   io.Reader
	buf [4096]byte
	p   int
	n   int
}

func (b *byteReader) Read(p []byte) (int, error) {
	if b.p < b.n {
		n := copy(p, b.buf[b.p:b.n])
		b.p += n
		return n, nil
	}
	return b.r.Read(p)
}

// Buffered is the number of input bytes read but not consumed.
func (b *byteReader) Buffered() int { return b.n - b.p }

func (b *byteReader) ReadByte() (byte, error) {
	if b.p >= b.n {
		n, err := b.r.Read(b.buf[:])
		if n == 0 {
			if err == nil {
				err = io.ErrNoProgress
			}
			return 0, err
		}
		b.p, b.n = 0, n
	}
	c := b.buf[b.p]
	b.p++
	return c, nil
}
