package smtpserver

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// trackedConn wraps every accepted connection. It lets the server bound a
// connection's life (every read deadline go-smtp sets is clamped to the
// connection's end of life), drain it at shutdown (an idle connection's
// read fails at once, go-smtp then answers 421), close it right after a
// final reply, and count bytes and connections per client address.
type trackedConn struct {
	net.Conn
	srv   *Server
	id    uint64
	ip    netip.Addr
	start time.Time
	end   time.Time // hard end of life (MaxConnDuration)

	mu         sync.Mutex
	inTx       bool // between MAIL and the end of the transaction
	draining   bool
	closeAfter bool // close after the next write (a Close reply)

	bytesIn, bytesOut atomic.Int64
	released          atomic.Bool

	// Per-connection figures for the one log line at close (under mu).
	helo     string
	user     string
	tls      string
	messages int
	errors   int
	commands int
}

// note updates the connection's log figures.
func (c *trackedConn) note(f func(c *trackedConn)) {
	c.mu.Lock()
	f(c)
	c.mu.Unlock()
}

// Read counts bytes and, inside a transaction, moves the read deadline
// forward on progress: go-smtp sets it once per command, so without this a
// large DATA or BDAT would have to arrive whole within one ReadTimeout.
// A client that stops sending still times out after ReadTimeout.
func (c *trackedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.bytesIn.Add(int64(n))
	if n > 0 {
		c.mu.Lock()
		if c.inTx && !c.draining {
			c.Conn.SetReadDeadline(c.clampLocked(time.Now().Add(c.srv.cfg.ReadTimeout)))
		}
		c.mu.Unlock()
	}
	return n, err
}

func (c *trackedConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.bytesOut.Add(int64(n))
	c.mu.Lock()
	closeNow := c.closeAfter
	c.mu.Unlock()
	if closeNow {
		c.Conn.Close()
	}
	return n, err
}

// SetReadDeadline clamps t to the connection's end of life, and to "now"
// once the server drains and no transaction is in progress.
func (c *trackedConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.Conn.SetReadDeadline(c.clampLocked(t))
}

func (c *trackedConn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.Conn.SetWriteDeadline(t)
}

func (c *trackedConn) clampLocked(t time.Time) time.Time {
	if c.draining && !c.inTx {
		return time.Unix(1, 0)
	}
	if t.IsZero() || t.After(c.end) {
		return c.end
	}
	return t
}

// setInTx marks the start or end of a transaction. At the end of one during
// a drain, the pending read is cut short so the client gets its 421.
// Starting a transaction fails once the server drains.
func (c *trackedConn) setInTx(on bool) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if on && c.draining {
		return false
	}
	c.inTx = on
	if !on && c.draining {
		c.Conn.SetReadDeadline(time.Unix(1, 0))
	}
	return true
}

// drain makes an idle connection's next (or current) read fail.
func (c *trackedConn) drain() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.draining = true
	if !c.inTx {
		c.Conn.SetReadDeadline(time.Unix(1, 0))
	}
}

// closeAfterReply asks for the connection to close once the next reply is
// written.
func (c *trackedConn) closeAfterReply() {
	c.mu.Lock()
	c.closeAfter = true
	c.mu.Unlock()
}

func (c *trackedConn) Close() error {
	err := c.Conn.Close()
	if c.released.CompareAndSwap(false, true) {
		c.srv.release(c)
	}
	return err
}
