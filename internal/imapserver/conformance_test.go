package imapserver

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestConformance runs the scripts in testdata/conformance. A script is a
// list of lines:
//
//	# comment
//	C: text        send "text\r\n" on session 1 (C2: on session 2, ...)
//	S: pattern     the next line from session 1 must match pattern
//	S: ...         skip lines until the next S pattern of that session matches
//	D: subject     deliver a message with that subject to INBOX (out of band)
//	W: 300         wait that many milliseconds
//	N2:            session 2 must have nothing to read for 300 ms
//	T:             start TLS on session 1 (after its STARTTLS OK)
//	P: 2           prune tombstones, keeping the newest 2 of each mailbox
//
// In patterns "{*}" matches any text, "{=name}" matches a word (no space,
// bracket or parenthesis) and remembers it as name, and everything else is
// literal. In C lines "{=name}" is replaced by the remembered word, so that
// a script can send back a UIDVALIDITY or MODSEQ the server chose.
// Sessions connect on first use; their greeting is checked. A script with
// a T line runs on a server with a TLS certificate (STARTTLS offered).
func TestConformance(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "conformance", "*.txt"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no conformance scripts: %v", err)
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".txt"), func(t *testing.T) {
			runScript(t, f)
		})
	}
}

type scriptSession struct {
	conn net.Conn
	br   *bufio.Reader
}

var lineRE = regexp.MustCompile(`^([CSDWNTP])(\d*):(?: (.*))?$`)

func runScript(t *testing.T, path string) {
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var mods []func(*Config)
	if regexp.MustCompile(`(?m)^T\d*:`).Match(data) {
		cfg := testTLSConfig(t)
		mods = append(mods, func(c *Config) { c.TLS = cfg })
	}
	ts := newTestServer(t, mods...)
	sessions := map[int]*scriptSession{}
	get := func(n int) *scriptSession {
		if s := sessions[n]; s != nil {
			return s
		}
		c, err := net.Dial("tcp", ts.addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		s := &scriptSession{conn: c, br: bufio.NewReader(c)}
		sessions[n] = s
		if g := readScriptLine(t, s, 0); !strings.HasPrefix(g, "* OK") {
			t.Fatalf("session %d greeting %q", n, g)
		}
		return s
	}
	skip := map[int]bool{}
	vars := map[string]string{}
	subjects := 0
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimRight(line, "\r")
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		m := lineRE.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("%s:%d: bad script line %q", path, i+1, line)
		}
		n := 1
		if m[2] != "" {
			n, _ = strconv.Atoi(m[2])
		}
		arg := m[3]
		switch m[1] {
		case "C":
			s := get(n)
			arg, err := substitute(arg, vars)
			if err != nil {
				t.Fatalf("%s:%d: %v", path, i+1, err)
			}
			s.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
			if _, err := s.conn.Write([]byte(arg + "\r\n")); err != nil {
				t.Fatalf("%s:%d: write: %v", path, i+1, err)
			}
		case "S":
			if arg == "..." {
				skip[n] = true
				continue
			}
			re, names := patternRE(arg)
			s := get(n)
			for {
				got := readScriptLine(t, s, i+1)
				if m := re.FindStringSubmatch(got); m != nil {
					for j, name := range names {
						vars[name] = m[j+1]
					}
					break
				}
				if !skip[n] {
					t.Fatalf("%s:%d: session %d: got %q, want %q", path, i+1, n, got, arg)
				}
			}
			skip[n] = false
		case "D":
			subjects++
			ts.deliver("INBOX", testMsg(arg, "body of "+arg))
		case "P":
			keep, _ := strconv.Atoi(arg)
			if _, err := ts.st.PruneTombstones(context.Background(), keep); err != nil {
				t.Fatalf("%s:%d: pruning: %v", path, i+1, err)
			}
		case "W":
			ms, _ := strconv.Atoi(arg)
			time.Sleep(time.Duration(ms) * time.Millisecond)
		case "T":
			s := get(n)
			if s.br.Buffered() > 0 {
				t.Fatalf("%s:%d: session %d: bytes after the STARTTLS reply", path, i+1, n)
			}
			tc := tls.Client(s.conn, &tls.Config{InsecureSkipVerify: true})
			tc.SetDeadline(time.Now().Add(5 * time.Second))
			if err := tc.Handshake(); err != nil {
				t.Fatalf("%s:%d: session %d: TLS handshake: %v", path, i+1, n, err)
			}
			tc.SetDeadline(time.Time{})
			s.conn, s.br = tc, bufio.NewReader(tc)
		case "N":
			s := get(n)
			s.conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
			if l, err := s.br.ReadString('\n'); err == nil || l != "" {
				t.Fatalf("%s:%d: session %d: unexpected %q", path, i+1, n, l)
			}
		}
	}
}

func readScriptLine(t *testing.T, s *scriptSession, lineNo int) string {
	t.Helper()
	s.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	l, err := s.br.ReadString('\n')
	if err != nil {
		t.Fatalf("script line %d: read: %v (partial %q)", lineNo, err, l)
	}
	return strings.TrimRight(l, "\r\n")
}

var varRE = regexp.MustCompile(`\{\*\}|\{=(\w+)\}`)

// patternRE compiles a script pattern and returns the names of its
// captures in order.
func patternRE(p string) (*regexp.Regexp, []string) {
	var b strings.Builder
	var names []string
	b.WriteString("^")
	last := 0
	for _, m := range varRE.FindAllStringSubmatchIndex(p, -1) {
		b.WriteString(regexp.QuoteMeta(p[last:m[0]]))
		if m[2] < 0 {
			b.WriteString(".*")
		} else {
			b.WriteString(`([^\s\[\]()]+)`)
			names = append(names, p[m[2]:m[3]])
		}
		last = m[1]
	}
	b.WriteString(regexp.QuoteMeta(p[last:]))
	b.WriteString("$")
	return regexp.MustCompile(b.String()), names
}

// substitute replaces "{=name}" in a C line by the word a pattern captured.
func substitute(line string, vars map[string]string) (string, error) {
	var missing string
	out := varRE.ReplaceAllStringFunc(line, func(m string) string {
		if m == "{*}" {
			return m
		}
		name := m[2 : len(m)-1]
		v, ok := vars[name]
		if !ok {
			missing = name
		}
		return v
	})
	if missing != "" {
		return "", fmt.Errorf("no captured value for {=%s}", missing)
	}
	return out, nil
}
