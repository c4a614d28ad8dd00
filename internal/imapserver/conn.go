package imapserver

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"time"

	"github.com/tern-mail/tern/internal/imap"
	"github.com/tern-mail/tern/internal/store"
)

type state int

const (
	stateNotAuth state = 1 << iota
	stateAuth
	stateSelected
)

const (
	anyState  = stateNotAuth | stateAuth | stateSelected
	authState = stateAuth | stateSelected
)

// reply is a handler's tagged completion; the loop writes it.
type reply struct {
	status string // OK, NO, BAD
	code   string // response code without brackets ("TRYCREATE")
	text   string
	bye    bool // close the connection after the reply
}

func ok(text string) reply { return reply{status: "OK", text: text} }
func okCode(code, text string) reply {
	return reply{status: "OK", code: code, text: text}
}
func no(code, text string) reply { return reply{status: "NO", code: code, text: text} }
func bad(text string) reply      { return reply{status: "BAD", text: text} }

type handler func(s *session, cmd *imap.Command) reply

type cmdSpec struct {
	states state
	fn     handler
}

// commands is the state table (RFC 9051 §3, §6): which state allows which
// command, and its handler. It is never modified.
var commands = map[string]cmdSpec{
	"CAPABILITY":   {anyState, (*session).cmdCapability},
	"NOOP":         {anyState, (*session).cmdNoop},
	"LOGOUT":       {anyState, (*session).cmdLogout},
	"ID":           {anyState, (*session).cmdID},
	"STARTTLS":     {stateNotAuth, (*session).cmdStartTLS},
	"LOGIN":        {stateNotAuth, (*session).cmdLogin},
	"AUTHENTICATE": {stateNotAuth, (*session).cmdAuthenticate},
	"ENABLE":       {authState, (*session).cmdEnable},
	"COMPRESS":     {authState, (*session).cmdCompress},
	"NAMESPACE":    {authState, (*session).cmdNamespace},
	"SELECT":       {authState, (*session).cmdSelect},
	"EXAMINE":      {authState, (*session).cmdSelect},
	"CREATE":       {authState, (*session).cmdCreate},
	"DELETE":       {authState, (*session).cmdDelete},
	"RENAME":       {authState, (*session).cmdRename},
	"SUBSCRIBE":    {authState, (*session).cmdSubscribe},
	"UNSUBSCRIBE":  {authState, (*session).cmdSubscribe},
	"LIST":         {authState, (*session).cmdList},
	"LSUB":         {authState, (*session).cmdList},
	"STATUS":       {authState, (*session).cmdStatus},
	"APPEND":       {authState, (*session).cmdAppend},
	"IDLE":         {authState, (*session).cmdIdle},
	"GETQUOTA":     {authState, (*session).cmdGetQuota},
	"GETQUOTAROOT": {authState, (*session).cmdGetQuotaRoot},
	"SETQUOTA":     {authState, (*session).cmdSetQuota},
	"CHECK":        {stateSelected, (*session).cmdNoop},
	"CLOSE":        {stateSelected, (*session).cmdClose},
	"UNSELECT":     {stateSelected, (*session).cmdClose},
	"EXPUNGE":      {stateSelected, (*session).cmdExpunge},
	"SEARCH":       {stateSelected, (*session).cmdSearch},
	"SORT":         {stateSelected, (*session).cmdSort},
	"THREAD":       {stateSelected, (*session).cmdThread},
	"FETCH":        {stateSelected, (*session).cmdFetch},
	"STORE":        {stateSelected, (*session).cmdStore},
	"COPY":         {stateSelected, (*session).cmdCopy},
	"MOVE":         {stateSelected, (*session).cmdCopy},
}

// maxErrors closes a connection after this many BAD replies in a row.
const maxErrors = 20

// session is one client connection.
type session struct {
	srv  *Server
	conn net.Conn
	br   *bufio.Reader
	bw   *bufio.Writer
	w    *imap.Writer
	log  *slog.Logger
	ctx  context.Context

	state    state
	tls      *tls.ConnectionState
	acct     store.Account
	loggedIn bool
	watcher  *store.Watcher
	sel      *selected

	// RFC 5161 ENABLE state.
	rev2, utf8, condstore, qresync bool
	compressed                     bool

	// unknownCTE: a BINARY item of this FETCH met an encoding it cannot
	// undo; the command ends NO [UNKNOWN-CTE] (RFC 3516 §4.3).
	unknownCTE bool

	errors  int
	closing atomic.Bool
	// command rate window
	rateStart time.Time
	rateCount int
}

func newSession(srv *Server, c net.Conn, id uint64) *session {
	s := &session{srv: srv, conn: c, state: stateNotAuth, ctx: context.Background()}
	s.log = srv.log.With("cid", id, "remote", c.RemoteAddr().String())
	s.br = bufio.NewReaderSize(c, 4096)
	s.bw = bufio.NewWriterSize(c, 4096)
	s.w = imap.NewWriter(s.bw)
	return s
}

// setReadDeadline sets the next read's deadline, unless Shutdown has
// already asked for an immediate one (checked after setting, so a
// concurrent Shutdown is never overwritten).
func (s *session) setReadDeadline(d time.Duration) {
	s.conn.SetReadDeadline(time.Now().Add(d))
	if s.closing.Load() {
		s.conn.SetReadDeadline(time.Now())
	}
}

func (s *session) run(implicitTLS bool) {
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("panic in session", "panic", r, "stack", string(debug.Stack()))
		}
		s.cleanup()
		s.conn.Close()
	}()
	if implicitTLS {
		tc := tls.Server(s.conn, s.srv.cfg.TLS)
		tc.SetDeadline(time.Now().Add(30 * time.Second))
		if err := tc.Handshake(); err != nil {
			s.log.Debug("tls handshake", "err", err)
			return
		}
		tc.SetDeadline(time.Time{})
		st := tc.ConnectionState()
		s.setConn(tc, &st)
	}
	s.w.Raw("* OK [CAPABILITY ").Raw(s.capabilities()).Raw("] ").Raw(s.srv.cfg.Hostname).Raw(" tern IMAP ready").CRLF()
	if s.flush() != nil {
		return
	}
	for s.serveOne() {
	}
}

func (s *session) setConn(c net.Conn, st *tls.ConnectionState) {
	s.conn = c
	s.tls = st
	s.br.Reset(c)
	s.bw.Reset(c)
}

func (s *session) cleanup() {
	if s.watcher != nil {
		s.watcher.Close()
	}
	if s.loggedIn {
		s.srv.dropUser(s.acct.ID)
	}
}

func (s *session) flush() error {
	if err := s.bw.Flush(); err != nil {
		return err
	}
	if f, ok := s.conn.(interface{ FlushCompressed() error }); ok {
		return f.FlushCompressed()
	}
	return nil
}

// preAuthLimits bound commands before login: a LOGIN, AUTHENTICATE or ID
// needs little, and an anonymous client must not make the server hold an
// APPEND-sized literal.
var preAuthLimits = imap.Limits{MaxLine: 8 << 10, MaxLiteral: 8 << 10, MaxCommand: 64 << 10}

// serveOne reads, runs and answers one command; false ends the session.
func (s *session) serveOne() bool {
	s.setReadDeadline(s.srv.cfg.IdleTimeout)
	lim := s.srv.cfg.Limits
	if s.state == stateNotAuth {
		lim = preAuthLimits
	}
	raw, err := imap.ReadCommand(s.br, lim, s.sendContinuation)
	if s.closing.Load() {
		s.w.Raw("* BYE server shutting down").CRLF()
		s.flush()
		return false
	}
	if err != nil {
		return s.readError(err)
	}
	s.throttle()
	opts := imap.Options{UTF8: s.utf8}
	cmd, err := imap.ParseCommand(raw, opts)
	if err != nil {
		return s.syntaxError(cmd, err)
	}
	if s.log.Enabled(s.ctx, slog.LevelDebug) {
		s.log.Debug("command", "tag", cmd.Tag, "cmd", cmd.Name, "uid", cmd.UID, "line", redact(cmd, raw))
	}
	spec, okSpec := commands[cmd.Name]
	var r reply
	switch {
	case !okSpec:
		r = bad("Unknown command")
	case spec.states&s.state == 0:
		r = bad(fmt.Sprintf("%s not allowed now", cmd.Name))
	default:
		r = spec.fn(s, cmd)
	}
	if r.status == "BAD" {
		s.errors++
	} else {
		s.errors = 0
	}
	if s.state == stateSelected && cmd.Name != "LOGOUT" {
		s.sync(expungeAllowed(cmd), cmd.Name == "NOOP" || cmd.Name == "CHECK")
	}
	if r.status != "" {
		s.writeTagged(cmd.Tag, r)
	}
	if err := s.flush(); err != nil {
		return false
	}
	if s.errors >= maxErrors {
		s.w.Raw("* BYE too many errors").CRLF()
		s.flush()
		return false
	}
	return !r.bye
}

// throttle slows a connection sending more than MaxCommandsPerSecond.
func (s *session) throttle() {
	now := time.Now()
	if now.Sub(s.rateStart) >= time.Second {
		s.rateStart, s.rateCount = now, 0
	}
	s.rateCount++
	if s.rateCount > s.srv.cfg.MaxCommandsPerSecond {
		time.Sleep(time.Second - now.Sub(s.rateStart))
		s.rateStart, s.rateCount = time.Now(), 1
	}
}

// expungeAllowed: RFC 9051 §7.5.1: no EXPUNGE during FETCH, STORE or
// SEARCH by sequence number (and SORT/THREAD likewise).
func expungeAllowed(cmd *imap.Command) bool {
	switch cmd.Name {
	case "FETCH", "STORE", "SEARCH", "SORT", "THREAD":
		return cmd.UID
	}
	return true
}

func (s *session) writeTagged(tag string, r reply) {
	s.w.Raw(tag).SP().Raw(r.status).SP()
	if r.code != "" {
		s.w.Byte('[').Raw(r.code).Raw("] ")
	}
	text := r.text
	if text == "" {
		text = "done"
	}
	s.w.Raw(text).CRLF()
}

func (s *session) sendContinuation() error {
	s.w.Raw("+ Ready for literal data").CRLF()
	return s.flush()
}

func (s *session) readError(err error) bool {
	var big *imap.LiteralTooBigError
	var long *imap.LineTooLongError
	switch {
	case errors.Is(err, imap.ErrLineTooLong):
		// Answer the command by its tag when the line began with one, so
		// that a client waiting for it does not hang.
		if errors.As(err, &long) && long.Tag != "" {
			s.writeTagged(long.Tag, bad("line too long"))
		} else {
			s.w.Raw("* BAD line too long").CRLF()
		}
		s.errors++
		return s.flush() == nil && s.errors < maxErrors
	case errors.As(err, &big):
		if big.Sync && big.Tag != "" {
			// RFC 7888 §4: refuse a synchronizing literal with a tagged NO.
			s.writeTagged(big.Tag, no("TOOBIG", "literal too big"))
			return s.flush() == nil
		}
		s.w.Raw("* BYE [TOOBIG] literal too big").CRLF()
		s.flush()
		return false
	case errors.Is(err, os.ErrDeadlineExceeded):
		s.w.Raw("* BYE autologout; idle for too long").CRLF()
		s.flush()
		return false
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed):
		return false
	}
	s.log.Debug("read", "err", err)
	return false
}

func (s *session) syntaxError(cmd *imap.Command, err error) bool {
	s.errors++
	msg := strings.ReplaceAll(err.Error(), "\r", " ")
	msg = strings.ReplaceAll(msg, "\n", " ")
	if cmd != nil && cmd.Tag != "" {
		s.w.Raw(cmd.Tag).Raw(" BAD ").Raw(msg).CRLF()
	} else {
		s.w.Raw("* BAD ").Raw(msg).CRLF()
	}
	return s.flush() == nil && s.errors < maxErrors
}

// redact hides credentials in the debug transcript.
func redact(cmd *imap.Command, raw []byte) string {
	switch cmd.Name {
	case "LOGIN", "AUTHENTICATE":
		return cmd.Tag + " " + cmd.Name + " ***"
	case "APPEND":
		if len(raw) > 200 {
			return string(raw[:200]) + "..."
		}
	}
	return string(raw)
}

func (s *session) cmdNoop(cmd *imap.Command) reply { return ok(cmd.Name + " completed") }

func (s *session) cmdLogout(cmd *imap.Command) reply {
	s.w.Raw("* BYE logging out").CRLF()
	return reply{status: "OK", text: "LOGOUT completed", bye: true}
}
