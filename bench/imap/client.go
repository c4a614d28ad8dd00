package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// conn is a minimal IMAP client: one command at a time, responses read up
// to the tagged line, literals consumed.
type conn struct {
	c   net.Conn
	br  *bufio.Reader
	bw  *bufio.Writer
	tag int
	// lines of the last response (literal contents excluded).
	lines []string
	// lastName is the first word of the last command.
	lastName string
	// timeout bounds one command (default one minute).
	timeout time.Duration
}

func dial(addr string) (*conn, error) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	cn := &conn{c: c, br: bufio.NewReaderSize(c, 64<<10), bw: bufio.NewWriterSize(c, 16<<10)}
	c.SetDeadline(time.Now().Add(60 * time.Second))
	l, err := cn.br.ReadString('\n')
	if err != nil {
		c.Close()
		return nil, err
	}
	if !strings.HasPrefix(l, "* OK") {
		c.Close()
		return nil, fmt.Errorf("greeting %q", l)
	}
	return cn, nil
}

func (c *conn) close() { c.c.Close() }

// cmd sends a command (with an optional literal after it, sent as a
// non-synchronizing literal when lit is set) and reads the response.
func (c *conn) cmd(format string, a ...any) error {
	return c.cmdLiteral(nil, format, a...)
}

func (c *conn) cmdLiteral(lit []byte, format string, a ...any) error {
	c.tag++
	tag := "t" + strconv.Itoa(c.tag)
	if c.timeout == 0 {
		c.timeout = time.Minute
	}
	c.c.SetDeadline(time.Now().Add(c.timeout))
	line := fmt.Sprintf(format, a...)
	c.lastName, _, _ = strings.Cut(line, " ")
	c.bw.WriteString(tag + " " + line)
	if lit != nil {
		// A synchronizing literal: Dovecot and tern both support
		// LITERAL+, but the continuation round trip is what clients do.
		fmt.Fprintf(c.bw, " {%d}\r\n", len(lit))
		if err := c.bw.Flush(); err != nil {
			return err
		}
		l, err := c.br.ReadString('\n')
		if err != nil {
			return err
		}
		if !strings.HasPrefix(l, "+") {
			return fmt.Errorf("no continuation: %q", l)
		}
		c.bw.Write(lit)
	}
	c.bw.WriteString("\r\n")
	if err := c.bw.Flush(); err != nil {
		return err
	}
	return c.read(tag)
}

func (c *conn) read(tag string) error {
	c.lines = c.lines[:0]
	for {
		l, err := c.br.ReadString('\n')
		if err != nil {
			return err
		}
		// A line ending in {n} announces a literal.
		for {
			t := strings.TrimRight(l, "\r\n")
			i := strings.LastIndexByte(t, '{')
			if i < 0 || !strings.HasSuffix(t, "}") {
				break
			}
			n, err := strconv.Atoi(t[i+1 : len(t)-1])
			if err != nil {
				break
			}
			if _, err := io.CopyN(io.Discard, c.br, int64(n)); err != nil {
				return err
			}
			more, err := c.br.ReadString('\n')
			if err != nil {
				return err
			}
			l = t + more
		}
		c.lines = append(c.lines, l)
		if strings.HasPrefix(l, tag+" ") {
			rest := l[len(tag)+1:]
			if !strings.HasPrefix(rest, "OK") {
				return fmt.Errorf("%s", strings.TrimSpace(l))
			}
			return nil
		}
	}
}

// exists returns the message count from the last SELECT.
func (c *conn) exists() int {
	for _, l := range c.lines {
		if strings.HasPrefix(l, "* ") && strings.HasSuffix(strings.TrimSpace(l), " EXISTS") {
			n, _ := strconv.Atoi(strings.Fields(l)[1])
			return n
		}
	}
	return 0
}

// appendUID returns the UID from an APPENDUID response code, or 0.
func (c *conn) appendUID() uint32 {
	last := c.lines[len(c.lines)-1]
	i := strings.Index(last, "[APPENDUID ")
	if i < 0 {
		return 0
	}
	f := strings.Fields(last[i+len("[APPENDUID "):])
	if len(f) < 2 {
		return 0
	}
	n, _ := strconv.ParseUint(strings.TrimSuffix(f[1], "]"), 10, 32)
	return uint32(n)
}
