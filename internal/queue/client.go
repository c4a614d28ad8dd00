package queue

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// reply is one SMTP reply (RFC 5321 §4.2).
type reply struct {
	Code     int
	Enhanced string // RFC 3463 code, when the server gave one
	Text     string
}

func (r reply) String() string {
	if r.Enhanced != "" {
		return fmt.Sprintf("%d %s %s", r.Code, r.Enhanced, r.Text)
	}
	return fmt.Sprintf("%d %s", r.Code, r.Text)
}

// Timeouts of RFC 5321 §4.5.3.2 (shortened for a queue that retries).
const (
	greetTimeout = 5 * time.Minute
	cmdTimeout   = 5 * time.Minute
	dataTimeout  = 10 * time.Minute
	maxReplySize = 64 << 10
)

// client is a minimal SMTP client: EHLO, STARTTLS, AUTH PLAIN, and a
// pipelined transaction (RFC 2920). One client serves one connection and
// may carry several transactions (connection reuse).
type client struct {
	raw       net.Conn // the TCP connection, for cancellation
	cancelled atomic.Bool
	conn      net.Conn
	br        *bufio.Reader
	bw        *bufio.Writer
	host      string // the MX host name (for logs, DSN Remote-MTA, TLS)
	ext       map[string]string
	tls       bool
	verified  bool // certificate verified against host
	used      time.Time
	broken    bool
}

// newClient reads the greeting and sends EHLO.
func newClient(conn net.Conn, host, helo string) (*client, error) {
	c := &client{raw: conn, conn: conn, host: host, br: bufio.NewReaderSize(conn, 4096), bw: bufio.NewWriterSize(conn, 8192)}
	conn.SetDeadline(time.Now().Add(greetTimeout))
	r, err := c.readReply()
	if err != nil {
		return nil, err
	}
	if r.Code != 220 {
		return nil, &smtpError{r, "greeting"}
	}
	if err := c.hello(helo); err != nil {
		return nil, err
	}
	return c, nil
}

// smtpError is an unexpected reply; its code says temporary or permanent.
type smtpError struct {
	r     reply
	stage string
}

func (e *smtpError) Error() string { return fmt.Sprintf("%s: %s", e.stage, e.r) }

func (c *client) hello(name string) error {
	r, err := c.cmd(cmdTimeout, "EHLO %s", name)
	if err != nil {
		return err
	}
	if r.Code != 250 {
		// RFC 5321 §3.2: fall back to HELO.
		if r, err = c.cmd(cmdTimeout, "HELO %s", name); err != nil {
			return err
		}
		if r.Code != 250 {
			return &smtpError{r, "HELO"}
		}
		c.ext = map[string]string{}
		return nil
	}
	c.ext = map[string]string{}
	lines := strings.Split(r.Text, "\n")
	for _, l := range lines[1:] {
		k, v, _ := strings.Cut(strings.TrimSpace(l), " ")
		c.ext[strings.ToUpper(k)] = v
	}
	return nil
}

func (c *client) has(ext string) bool { _, ok := c.ext[ext]; return ok }

// startTLS upgrades the connection (RFC 3207) and says EHLO again.
func (c *client) startTLS(cfg *tls.Config, helo string) error {
	r, err := c.cmd(cmdTimeout, "STARTTLS")
	if err != nil {
		return err
	}
	if r.Code != 220 {
		return &smtpError{r, "STARTTLS"}
	}
	tc := tls.Client(c.conn, cfg)
	tc.SetDeadline(time.Now().Add(cmdTimeout))
	if err := tc.Handshake(); err != nil {
		c.broken = true
		return fmt.Errorf("TLS handshake with %s: %w", c.host, err)
	}
	c.conn, c.tls, c.verified = tc, true, !cfg.InsecureSkipVerify
	c.br.Reset(tc)
	c.bw.Reset(tc)
	return c.hello(helo)
}

// auth authenticates with PLAIN (RFC 4954, RFC 4616); only over TLS.
func (c *client) auth(user, pass string) error {
	if !c.tls {
		return errors.New("refusing to send credentials without TLS")
	}
	ir := base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pass))
	r, err := c.cmd(cmdTimeout, "AUTH PLAIN %s", ir)
	if err != nil {
		return err
	}
	if r.Code != 235 {
		return &smtpError{r, "AUTH"}
	}
	return nil
}

// readReply reads one possibly multi-line reply; the lines' texts are
// joined with "\n".
func (c *client) readReply() (reply, error) {
	var r reply
	var texts []string
	total := 0
	for {
		line, err := c.br.ReadString('\n')
		if err != nil {
			c.broken = true
			return r, err
		}
		total += len(line)
		if total > maxReplySize {
			c.broken = true
			return r, errors.New("reply too long")
		}
		line = strings.TrimRight(line, "\r\n")
		if len(line) < 3 {
			c.broken = true
			return r, fmt.Errorf("malformed reply %q", line)
		}
		code, err := strconv.Atoi(line[:3])
		if err != nil || code < 200 || code > 599 || (r.Code != 0 && code != r.Code) {
			c.broken = true
			return r, fmt.Errorf("malformed reply %q", line)
		}
		r.Code = code
		more := len(line) > 3 && line[3] == '-'
		text := ""
		if len(line) > 4 {
			text = line[4:]
		}
		texts = append(texts, text)
		if !more {
			break
		}
	}
	r.Text = strings.Join(texts, "\n")
	// RFC 2034 §4: the enhanced code leads the text when announced.
	if f, rest, _ := strings.Cut(texts[0], " "); isEnhanced(f) && f[0] == byte('0'+r.Code/100) {
		r.Enhanced = f
		if len(texts) == 1 {
			r.Text = rest
		}
	}
	return r, nil
}

func isEnhanced(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return false
	}
	for _, p := range parts {
		if _, err := strconv.Atoi(p); err != nil || len(p) == 0 || len(p) > 3 {
			return false
		}
	}
	return s[0] == '2' || s[0] == '4' || s[0] == '5'
}

// watch interrupts the connection's I/O when ctx is cancelled (queue
// shutdown after the grace period); the returned func stops watching.
func (c *client) watch(ctx context.Context) func() bool {
	return context.AfterFunc(ctx, func() {
		c.cancelled.Store(true)
		c.raw.SetDeadline(time.Unix(1, 0))
	})
}

// deadline sets the I/O deadline unless the connection was cancelled.
func (c *client) deadline(t time.Time) {
	if !c.cancelled.Load() {
		c.conn.SetDeadline(t)
	}
}

func (c *client) cmd(timeout time.Duration, format string, args ...any) (reply, error) {
	c.deadline(time.Now().Add(timeout))
	fmt.Fprintf(c.bw, format+"\r\n", args...)
	if err := c.bw.Flush(); err != nil {
		c.broken = true
		return reply{}, err
	}
	return c.readReply()
}

// envelope is one transaction.
type envelope struct {
	From       string
	MailParams string // already formatted, leading space included
	Rcpts      []string
	RcptParams []string
}

// txResult holds the replies of one transaction.
type txResult struct {
	Mail  reply
	Rcpts []reply // one per recipient; zero Code when not reached
	Data  reply   // final reply after the message, zero when not sent
}

// send runs MAIL, RCPT..., DATA and the message, pipelined when the
// server offers PIPELINING (RFC 2920 §3.1: DATA ends the group).
func (c *client) send(ctx context.Context, env *envelope, body func(*bufio.Writer) error) (*txResult, error) {
	res := &txResult{Rcpts: make([]reply, len(env.Rcpts))}
	deadline := time.Now().Add(cmdTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	c.deadline(deadline)
	pipelined := c.has("PIPELINING")
	fmt.Fprintf(c.bw, "MAIL FROM:<%s>%s\r\n", env.From, env.MailParams)
	if !pipelined {
		if err := c.bw.Flush(); err != nil {
			c.broken = true
			return res, err
		}
		var err error
		if res.Mail, err = c.readReply(); err != nil {
			return res, err
		}
		if res.Mail.Code != 250 {
			return res, nil
		}
	}
	for i, rc := range env.Rcpts {
		fmt.Fprintf(c.bw, "RCPT TO:<%s>%s\r\n", rc, env.RcptParams[i])
		if !pipelined {
			if err := c.bw.Flush(); err != nil {
				c.broken = true
				return res, err
			}
			var err error
			if res.Rcpts[i], err = c.readReply(); err != nil {
				return res, err
			}
		}
	}
	c.bw.WriteString("DATA\r\n")
	if err := c.bw.Flush(); err != nil {
		c.broken = true
		return res, err
	}
	var err error
	if pipelined {
		if res.Mail, err = c.readReply(); err != nil {
			return res, err
		}
		for i := range env.Rcpts {
			if res.Rcpts[i], err = c.readReply(); err != nil {
				return res, err
			}
		}
	}
	dataReply, err := c.readReply()
	if err != nil {
		return res, err
	}
	accepted := false
	for _, r := range res.Rcpts {
		accepted = accepted || r.Code/100 == 2
	}
	if dataReply.Code != 354 {
		if res.Mail.Code == 250 && accepted {
			res.Data = dataReply // DATA itself refused: applies to all
		}
		return res, nil
	}
	if !accepted || res.Mail.Code != 250 {
		// A server that accepted DATA without recipients gets an empty
		// message, which it must reject (RFC 2920 §3.1).
		c.bw.WriteString(".\r\n")
		c.bw.Flush()
		_, err := c.readReply()
		return res, err
	}
	c.deadline(time.Now().Add(dataTimeout))
	if err := body(c.bw); err != nil {
		c.broken = true
		return res, err
	}
	if err := c.bw.Flush(); err != nil {
		c.broken = true
		return res, err
	}
	res.Data, err = c.readReply()
	return res, err
}

// dotStuffer writes a message with CRLF line endings and leading dots
// doubled (RFC 5321 §4.5.2), from pieces in memory or a reader, then the
// terminating ".".
type dotStuffer struct {
	w   *bufio.Writer
	mid bool // inside a line
}

// write adds a piece of the message.
func (d *dotStuffer) write(p []byte) {
	for len(p) > 0 {
		if !d.mid && p[0] == '.' {
			d.w.WriteByte('.')
		}
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			d.w.Write(p)
			d.mid = true
			return
		}
		line := p[:i]
		if len(line) > 0 && line[len(line)-1] == '\r' {
			line = line[:len(line)-1]
		}
		d.w.Write(line)
		d.w.WriteString("\r\n")
		d.mid = false
		p = p[i+1:]
	}
}

// copy adds the rest of the message from r.
func (d *dotStuffer) copy(r io.Reader) error {
	buf := make([]byte, 32<<10)
	keep := 0 // a CR held back from the previous read: an LF may follow
	for {
		n, err := r.Read(buf[keep:])
		p := buf[:keep+n]
		keep = 0
		if err == nil && len(p) > 0 && p[len(p)-1] == '\r' {
			p, keep = p[:len(p)-1], 1
		}
		d.write(p)
		if keep == 1 {
			buf[0] = '\r'
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// end terminates the message.
func (d *dotStuffer) end() error {
	if d.mid {
		d.w.WriteString("\r\n")
	}
	_, err := d.w.WriteString(".\r\n")
	return err
}

// reset aborts a transaction (RFC 5321 §4.1.1.5) so the connection can
// be reused.
func (c *client) reset() error {
	r, err := c.cmd(cmdTimeout, "RSET")
	if err == nil && r.Code != 250 {
		c.broken = true
		err = &smtpError{r, "RSET"}
	}
	return err
}

// close says QUIT (briefly) and closes.
func (c *client) close() {
	if !c.broken {
		c.conn.SetDeadline(time.Now().Add(2 * time.Second))
		c.bw.WriteString("QUIT\r\n")
		if c.bw.Flush() == nil {
			c.readReply()
		}
	}
	c.conn.Close()
}
