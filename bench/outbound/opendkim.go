package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/smtp"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	msgdkim "github.com/emersion/go-msgauth/dkim"
	gosmtp "github.com/emersion/go-smtp"

	"github.com/tern-mail/tern/internal/dkim"
)

// startOpenDKIM creates an Ed25519 and an RSA-2048 key for src.test the
// way tern does (the same PKCS #8 files OpenDKIM reads) and runs one
// OpenDKIM per key in the foreground, as signing milters on UNIX sockets
// (over loopback TCP each message waited ~40 ms delayed ACKs per milter),
// relaxed/relaxed with tern's header list. One instance per key: OpenDKIM 2.11 has one SignatureAlgorithm
// per instance ("expecting an rsa key" otherwise). It returns the keys,
// the milter addresses for smtpd_milters and a stop function.
func startOpenDKIM(o opts, dir string) (*dkim.Keys, []string, func(), error) {
	keys := dkim.New(dir)
	if err := keys.Ensure("src.test"); err != nil {
		return nil, nil, nil, err
	}
	sels, err := keys.Selectors("src.test")
	if err != nil {
		return nil, nil, nil, err
	}
	var cmds []*exec.Cmd
	var once sync.Once
	stop := func() {
		once.Do(func() {
			for _, c := range cmds {
				c.Process.Kill()
				c.Wait()
			}
		})
	}
	var milters []string
	for _, sel := range sels {
		odDir := filepath.Join(dir, "opendkim-"+sel.Name)
		sock := filepath.Join(odDir, "milter.sock")
		alg := map[string]string{dkim.AlgEd25519: "ed25519-sha256", dkim.AlgRSA: "rsa-sha256"}[sel.Alg]
		cmd, err := runOpenDKIM(odDir, sock, alg, sel.Name, filepath.Join(dir, "dkim", "src.test", sel.Name+".key"))
		if err != nil {
			stop()
			return nil, nil, nil, err
		}
		cmds = append(cmds, cmd)
		milters = append(milters, "unix:"+sock)
		if err := waitUnix(sock); err != nil {
			stop()
			return nil, nil, nil, err
		}
	}
	return keys, milters, stop, nil
}

// runOpenDKIM starts one OpenDKIM signing src.test mail with one key.
func runOpenDKIM(odDir, sock, alg, selector, keyFile string) (*exec.Cmd, error) {
	if err := os.MkdirAll(odDir, 0o755); err != nil {
		return nil, err
	}
	conf := fmt.Sprintf(`Syslog no
Mode s
Canonicalization relaxed/relaxed
SignatureAlgorithm %s
Socket local:%s
UMask 000
PidFile %[3]s/opendkim.pid
KeyTable file:%[3]s/keytable
SigningTable refile:%[3]s/signingtable
InternalHosts 127.0.0.0/8
RequireSafeKeys no
SignHeaders %s
OversignHeaders From
`, alg, sock, odDir, strings.Join(uniq(dkim.SignedHeaders()), ","))
	files := map[string]string{
		"keytable":      fmt.Sprintf("%s._domainkey.src.test src.test:%s:%s\n", selector, selector, keyFile),
		"signingtable":  fmt.Sprintf("*@src.test %s._domainkey.src.test\n", selector),
		"opendkim.conf": conf,
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(odDir, name), []byte(data), 0o644); err != nil {
			return nil, err
		}
	}
	cmd := exec.Command(sbin("opendkim"), "-f", "-x", filepath.Join(odDir, "opendkim.conf"))
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("opendkim: %w", err)
	}
	return cmd, nil
}

func waitUnix(path string) error {
	for range 200 {
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(25 * time.Millisecond)
	}
	return fmt.Errorf("nothing listening on %s", path)
}

func uniq(l []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, s := range l {
		if k := strings.ToLower(s); !seen[k] {
			seen[k] = true
			out = append(out, s)
		}
	}
	return out
}

// checkSigned sends one message through Postfix to rcpt@check.test,
// which Postfix's transport map sends to a capturing server, and verifies
// that it carries a valid Ed25519 and a valid RSA signature of src.test.
func checkSigned(o opts, keys *dkim.Keys) error {
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.5:%d", o.capturePort))
	if err != nil {
		return err
	}
	got := make(chan []byte, 1)
	srv := gosmtp.NewServer(gosmtp.BackendFunc(func(*gosmtp.Conn) (gosmtp.Session, error) { return &capture{got: got}, nil }))
	srv.Domain = "check.test"
	srv.ErrorLog = log.New(io.Discard, "", 0)
	go srv.Serve(l)
	defer srv.Close()
	msg := strings.Replace(message(0), "rcpt@sink.test", "rcpt@check.test", 1)
	if err := smtp.SendMail(fmt.Sprintf("127.0.0.6:%d", o.pfPort), nil, "bench@src.test", []string{"rcpt@check.test"}, []byte(msg)); err != nil {
		return err
	}
	var data []byte
	select {
	case data = <-got:
	case <-time.After(30 * time.Second):
		return errors.New("no message captured within 30 s")
	}
	recs, err := keys.Records("src.test")
	if err != nil {
		return err
	}
	lookup := func(name string) ([]string, error) {
		for _, r := range recs {
			if r.Name == name {
				return []string{r.Value}, nil
			}
		}
		return nil, errors.New("no record")
	}
	vs, err := msgdkim.VerifyWithOptions(bytes.NewReader(data), &msgdkim.VerifyOptions{LookupTXT: lookup})
	if err != nil {
		return err
	}
	for _, v := range vs {
		if v.Err != nil {
			return fmt.Errorf("signature %s: %v", v.Domain, v.Err)
		}
	}
	hdr, _, _ := bytes.Cut(data, []byte("\r\n\r\n"))
	if len(vs) != 2 || !bytes.Contains(hdr, []byte("a=ed25519-sha256")) || !bytes.Contains(hdr, []byte("a=rsa-sha256")) {
		return fmt.Errorf("%d valid signatures, want an Ed25519 and an RSA one:\n%s", len(vs), hdr)
	}
	fmt.Printf("  (OpenDKIM check: %d valid signatures of src.test)\n", len(vs))
	return nil
}

// capture keeps the first message it receives.
type capture struct {
	got chan []byte
}

func (c *capture) Reset()                                 {}
func (c *capture) Logout() error                          { return nil }
func (c *capture) Mail(string, *gosmtp.MailOptions) error { return nil }
func (c *capture) Rcpt(string, *gosmtp.RcptOptions) error { return nil }
func (c *capture) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err == nil {
		select {
		case c.got <- b:
		default:
		}
	}
	return err
}
