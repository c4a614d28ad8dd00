package imapserver

import (
	"bufio"
	"compress/flate"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tern-mail/tern/internal/testutil"
)

// TestCompressDeflate runs RFC 4978 COMPRESS with a Go client using sync
// flushes: every response must arrive without waiting for more input.
func TestCompressDeflate(t *testing.T) {
	ts := newTestServer(t)
	ts.deliver("INBOX", testMsg("zipped", strings.Repeat("compress me ", 200)))
	r := ts.raw()
	r.login()
	r.expectOK("z", "COMPRESS DEFLATE")
	fw, _ := flate.NewWriter(r.conn, flate.BestSpeed)
	fr := bufio.NewReader(flate.NewReader(r.br))
	send := func(s string) {
		fw.Write([]byte(s + "\r\n"))
		fw.Flush()
	}
	read := func(tag string) []string {
		var out []string
		for {
			r.conn.SetReadDeadline(time.Now().Add(3 * time.Second))
			l, err := fr.ReadString('\n')
			if err != nil {
				t.Fatalf("compressed read: %v (after %q)", err, out)
			}
			out = append(out, strings.TrimRight(l, "\r\n"))
			if strings.HasPrefix(l, tag+" ") {
				return out
			}
		}
	}
	send("a SELECT INBOX")
	if l := read("a"); !has(l, "* 1 EXISTS") {
		t.Fatalf("SELECT: %q", l)
	}
	send("b FETCH 1 BODY[]")
	if l := read("b"); !has(l, "compress me compress me") {
		t.Fatalf("FETCH: %q", l)
	}
	send("c COMPRESS DEFLATE")
	if l := read("c"); !strings.HasPrefix(l[0], "c NO [COMPRESSIONACTIVE]") {
		t.Fatalf("second COMPRESS: %q", l)
	}
}

// TestCompressPythonPartialFlush: zlib clients (python, Thunderbird's
// libraries) flush with Z_PARTIAL_FLUSH or Z_SYNC_FLUSH; the server must
// answer each command without waiting for the next one.
func TestCompressPythonPartialFlush(t *testing.T) {
	py := testutil.NeedProgram(t, "python3")
	ts := newTestServer(t)
	ts.deliver("INBOX", testMsg("zipped", "body"))
	script := filepath.Join(t.TempDir(), "z.py")
	os.WriteFile(script, []byte(`
import socket, sys, zlib
host, port = sys.argv[1].rsplit(":", 1)
s = socket.create_connection((host, int(port)), timeout=5)
f = s.makefile("rb")
f.readline()
def cmd(line):
    s.sendall(line + b"\r\n")
    while True:
        l = f.readline()
        if l.startswith(line.split(b" ")[0] + b" "):
            return l
cmd(b'a LOGIN alice@example.org "correct horse battery"')
assert cmd(b"b COMPRESS DEFLATE").startswith(b"b OK")
co = zlib.compressobj(6, zlib.DEFLATED, -15)
de = zlib.decompressobj(-15)
buf = b""
def zcmd(tag, line, mode):
    global buf
    s.sendall(co.compress(tag + b" " + line + b"\r\n") + co.flush(mode))
    while True:
        while b"\r\n" not in buf:
            data = s.recv(65536)
            if not data:
                raise SystemExit("connection closed")
            buf += de.decompress(data)
        l, buf = buf.split(b"\r\n", 1)
        if l.startswith(tag + b" "):
            return l
for i, mode in enumerate([zlib.Z_PARTIAL_FLUSH, zlib.Z_SYNC_FLUSH, zlib.Z_PARTIAL_FLUSH, zlib.Z_PARTIAL_FLUSH]):
    tag = b"t%d" % i
    l = zcmd(tag, b"SELECT INBOX" if i == 0 else b"NOOP", mode)
    assert l.startswith(tag + b" OK"), l
print("ok")
`), 0o644)
	out, err := exec.Command(py, script, ts.addr).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "ok") {
		t.Fatalf("python COMPRESS client: %v\n%s", err, out)
	}
}
