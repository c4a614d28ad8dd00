package pop3server

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tern-mail/tern/internal/sasl"
	"github.com/tern-mail/tern/internal/store"
)

// state is the POP3 session state (RFC 1939 §3). UPDATE is entered and
// left within QUIT, so no command ever runs in it.
type state uint8

const (
	stateAuthorization state = 1 << iota
	stateTransaction
)

const (
	maxSASLLine     = 16 << 10
	maxAuthFailures = 3
	writeTimeout    = 5 * time.Minute
	storeTimeout    = time.Minute
)

// reply is what a handler returns; the loop writes it whole.
type reply struct {
	ok    bool
	code  string // RFC 2449 §8 response code, without brackets
	text  string
	lines []string                  // multi-line body, byte-stuffed by the writer
	body  func(*bufio.Writer) error // streamed multi-line body, writes its own terminator
	wire  []byte                    // multi-line body in wire form, without the terminator
	seen  *msg                      // RETR: mark this message \Seen once sent
	cont  bool                      // SASL continuation: "+ " text (RFC 5034 §4)
	bad   bool                      // counts toward MaxErrors
	close bool                      // end the session after writing
	tls   bool                      // STLS: handshake after writing
	multi bool                      // lines is a (possibly empty) multi-line body
	after func()                    // runs after the reply is written
}

func okReply(text string) reply        { return reply{ok: true, text: text} }
func errReply(code, text string) reply { return reply{code: code, text: text} }
func badReply(text string) reply       { return reply{text: text, bad: true} }
func multiReply(text string, l []string) reply {
	return reply{ok: true, text: text, lines: l, multi: true}
}

// session is one client connection.
type session struct {
	srv *Server
	id  uint64
	log *slog.Logger

	mu          sync.Mutex // guards c against interrupt during STLS
	raw         net.Conn
	c           net.Conn
	interrupted atomic.Bool
	readSet     time.Time // when the read deadline was last moved
	writeSet    time.Time
	debug       bool // transcript logging on

	br      *bufio.Reader
	bw      *bufio.Writer
	blobBuf *bufio.Reader // reads message bytes, reused
	tls     *tls.ConnectionState

	ctx    context.Context // ends with the connection; bounds SASL look-ups
	cancel context.CancelFunc

	state     state
	user      string      // from USER
	auth      sasl.Server // during an AUTH exchange
	errors    int
	authFails int

	acct     store.Account
	locked   bool
	seenBusy chan struct{} // closed when a background \Seen write ends
	drop     *maildrop
	ahead    *readAhead
	quit     bool
}

func newSession(srv *Server, c net.Conn, id uint64) *session {
	ctx, cancel := context.WithCancel(context.Background())
	return &session{
		srv: srv, id: id, raw: c, c: c, ctx: ctx, cancel: cancel,
		log:     srv.log.With("proto", "pop3", "conn", id, "remote", c.RemoteAddr().String()),
		br:      bufio.NewReaderSize(c, 4096),
		bw:      bufio.NewWriterSize(c, 64<<10),
		blobBuf: bufio.NewReaderSize(nil, 32<<10),
		state:   stateAuthorization,
	}
}

func (s *session) conn() net.Conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.c
}

// interrupt makes a pending or the next read fail (Shutdown).
func (s *session) interrupt() {
	s.interrupted.Store(true)
	s.raw.SetReadDeadline(time.Now())
}

func (s *session) close() {
	if s.drop != nil && !s.quit {
		// A dropped connection deletes nothing (RFC 1939 §6) but keeps
		// the \Seen marks of what was downloaded.
		s.flushSeen()
	}
	if s.locked {
		s.srv.unlock(s.acct.ID)
		s.locked = false
	}
	if s.ahead != nil {
		s.ahead.release()
	}
	s.cancel()
	s.conn().Close()
}

func (s *session) storeCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), storeTimeout)
}

func (s *session) plaintextOK() bool { return s.tls != nil || s.srv.cfg.InsecureAuth }

func (s *session) run(implicitTLS bool) {
	if implicitTLS {
		if !s.handshake() {
			return
		}
	}
	s.debug = s.log.Enabled(s.ctx, slog.LevelDebug)
	s.log.Debug("pop3: connected", "tls", implicitTLS)
	// RFC 1939 §4: the greeting.
	if s.write(okReply(s.srv.cfg.Hostname+" POP3 server ready")) != nil {
		return
	}
	for {
		line, tooLong, err := s.readLine()
		if err != nil {
			var last reply
			if s.interrupted.Load() {
				last = errReply("SYS/TEMP", "server shutting down, nothing was deleted")
			} else if errors.Is(err, os.ErrDeadlineExceeded) {
				last = errReply("", "autologout: idle for too long, nothing was deleted")
			}
			if last.text != "" {
				last.close = true
				s.write(last)
			}
			s.log.Debug("pop3: connection ended", "err", err)
			return
		}
		var r reply
		switch {
		case tooLong:
			if s.auth != nil {
				s.auth = nil
			}
			r = badReply("line too long")
		case s.auth != nil:
			r = s.saslLine(line)
		default:
			r = s.dispatch(line)
		}
		if r.bad {
			s.errors++
			if s.errors >= s.srv.cfg.MaxErrors {
				r = errReply("", "too many errors, closing connection")
				r.close = true
			}
		}
		if err := s.write(r); err != nil {
			s.log.Debug("pop3: write failed", "err", err)
			return
		}
		if r.seen != nil {
			s.retrieved(r.seen)
		}
		if r.after != nil {
			r.after()
		}
		if r.close {
			return
		}
		if r.tls && !s.handshake() {
			return
		}
	}
}

// readLine reads one line up to the cap (longer in a SASL exchange); an
// over-long line is consumed and reported with tooLong.
func (s *session) readLine() (line []byte, tooLong bool, err error) {
	max := s.srv.cfg.MaxLineLength
	if s.auth != nil {
		max = maxSASLLine
	}
	if s.br.Buffered() == 0 {
		if err := s.bw.Flush(); err != nil {
			return nil, false, err
		}
	}
	// Deadlines move only once a second: resetting the runtime timer on
	// every command of a pipelined download costs more than it is worth.
	if now := time.Now(); now.Sub(s.readSet) > time.Second {
		s.readSet = now
		s.raw.SetReadDeadline(now.Add(s.srv.cfg.IdleTimeout))
	}
	if s.interrupted.Load() {
		return nil, false, errors.New("server shutting down")
	}
	frag, err := s.br.ReadSlice('\n')
	if err == nil {
		// The common case: the whole line is in the buffer. It stays
		// valid until the next read, and handlers copy what they keep.
		if len(frag) > max {
			return nil, true, nil
		}
		return bytes.TrimRight(frag, "\r\n"), false, nil
	}
	var buf []byte
	for {
		if len(buf)+len(frag) <= max {
			buf = append(buf, frag...)
		} else {
			tooLong = true
		}
		if err != bufio.ErrBufferFull {
			break
		}
		frag, err = s.br.ReadSlice('\n')
	}
	if err != nil && err != bufio.ErrBufferFull {
		return nil, false, err
	}
	if tooLong {
		return nil, true, nil
	}
	return bytes.TrimRight(buf, "\r\n"), false, nil
}

// write sends a reply: the status line, then the multi-line body if any.
func (s *session) write(r reply) error {
	if now := time.Now(); now.Sub(s.writeSet) > time.Second {
		s.writeSet = now
		s.raw.SetWriteDeadline(now.Add(writeTimeout))
	}
	w := s.bw
	switch {
	case r.cont:
		w.WriteString("+ ")
		w.WriteString(r.text)
	default:
		if r.ok {
			w.WriteString("+OK")
		} else {
			w.WriteString("-ERR")
		}
		if r.code != "" {
			w.WriteString(" [" + r.code + "]")
		}
		if r.text != "" {
			w.WriteString(" " + r.text)
		}
	}
	w.WriteString("\r\n")
	if s.debug && (!r.ok || r.cont) {
		s.log.Debug("pop3: reply", "ok", r.ok, "code", r.code, "text", r.text)
	}
	if r.multi {
		for _, l := range r.lines {
			if len(l) > 0 && l[0] == '.' {
				w.WriteByte('.') // RFC 1939 §3 byte-stuffing
			}
			w.WriteString(l)
			w.WriteString("\r\n")
		}
		w.WriteString(".\r\n")
	}
	if r.wire != nil {
		w.Write(r.wire)
		w.WriteString(".\r\n")
	}
	if r.body != nil {
		if err := r.body(w); err != nil {
			// The status line is out: the only honest way on is to drop
			// the connection.
			s.log.Error("pop3: sending message failed", "err", err)
			return err
		}
	}
	if r.close || r.tls {
		return w.Flush()
	}
	return nil
}

// handshake runs the TLS handshake (implicit TLS or after STLS) and
// switches the session's reader and writer to the TLS connection.
func (s *session) handshake() bool {
	tc := tls.Server(s.raw, s.srv.cfg.TLS)
	s.raw.SetDeadline(time.Now().Add(30 * time.Second))
	if err := tc.Handshake(); err != nil {
		s.log.Debug("pop3: TLS handshake failed", "err", err)
		return false
	}
	s.raw.SetDeadline(time.Time{})
	s.readSet, s.writeSet = time.Time{}, time.Time{} // set afresh by the next read and write
	cs := tc.ConnectionState()
	s.mu.Lock()
	s.c = tc
	s.mu.Unlock()
	s.tls = &cs
	s.br.Reset(tc)
	s.bw.Reset(tc)
	// RFC 2595 §4: forget what was said before TLS.
	s.user = ""
	return true
}

// dispatch parses a command and runs its handler if the state allows it.
func (s *session) dispatch(line []byte) reply {
	cmd, err := ParseCommand(line)
	if err != nil {
		return badReply(err.Error())
	}
	if s.debug {
		if cmd.Name == "PASS" || cmd.Name == "AUTH" {
			s.log.Debug("pop3: command", "cmd", cmd.Name, "args", "(redacted)")
		} else {
			s.log.Debug("pop3: command", "cmd", cmd.Name, "args", cmd.Args)
		}
	}
	h, ok := commandTable[cmd.Name]
	if !ok {
		return badReply("unknown command " + cmd.Name)
	}
	if h.states&s.state == 0 {
		if s.state == stateAuthorization {
			return badReply(cmd.Name + " needs a login first")
		}
		return badReply(cmd.Name + " is not allowed after login")
	}
	if len(cmd.Args) < h.minArgs || len(cmd.Args) > h.maxArgs {
		return badReply("wrong number of arguments for " + cmd.Name)
	}
	return h.fn(s, cmd)
}
