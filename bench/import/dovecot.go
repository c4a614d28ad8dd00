package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// dovecot is a private Dovecot instance (no listeners) whose doveadm
// import is the peer figure: mbox into Maildir, Dovecot's defaults
// (mail_fsync = optimized).
type dovecot struct {
	dir  string
	conf string
	cmd  *exec.Cmd
	uid  int
	n    int
}

// startDovecot starts Dovecot with its own configuration under dir, or
// returns nil and the reason when it is not installed.
func startDovecot(dir string) (*dovecot, error) {
	bin, err := exec.LookPath("dovecot")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/dovecot"); serr != nil {
			return nil, fmt.Errorf("dovecot not installed")
		}
		bin = "/usr/sbin/dovecot"
	}
	if _, err := exec.LookPath("doveadm"); err != nil {
		return nil, fmt.Errorf("doveadm not installed")
	}
	d := &dovecot{dir: dir, conf: filepath.Join(dir, "dovecot.conf"), uid: os.Getuid()}
	gid := os.Getgid()
	if d.uid == 0 {
		d.uid, gid = 65534, 65534 // Dovecot refuses to store mail as root
	}
	for _, sub := range []string{"run", "home"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return nil, err
		}
	}
	if err := os.Chown(filepath.Join(dir, "home"), d.uid, gid); err != nil {
		return nil, err
	}
	conf := fmt.Sprintf(`base_dir = %[1]s/run
log_path = %[1]s/dovecot.log
ssl = no
protocols =
listen = 127.0.0.1
mail_location = maildir:~/Maildir
passdb {
  driver = static
  args = nopassword=y
}
userdb {
  driver = static
  args = uid=%[2]d gid=%[3]d home=%[1]s/home/%%u
}
`, dir, d.uid, gid)
	if err := os.WriteFile(d.conf, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	d.cmd = exec.Command(bin, "-c", d.conf, "-F")
	if err := d.cmd.Start(); err != nil {
		return nil, err
	}
	for range 100 {
		if _, err := os.Stat(filepath.Join(dir, "run", "auth-userdb")); err == nil {
			return d, nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	d.stop()
	return nil, fmt.Errorf("dovecot did not start (see %s/dovecot.log)", dir)
}

func (d *dovecot) stop() {
	d.cmd.Process.Signal(syscall.SIGTERM)
	d.cmd.Wait()
}

// importMbox runs doveadm import of one mbox file into a fresh user and
// returns the wall time and the peak RSS of doveadm.
func (d *dovecot) importMbox(path string) (time.Duration, int64, error) {
	d.n++
	srcDir := filepath.Join(d.dir, fmt.Sprintf("src%d", d.n))
	if err := os.MkdirAll(srcDir, 0o755); err != nil {
		return 0, 0, err
	}
	os.Chown(srcDir, d.uid, -1)
	// The mbox must be readable by the mail user.
	for p := path; p != "/" && p != "."; p = filepath.Dir(p) {
		if st, err := os.Stat(p); err == nil && st.IsDir() && st.Mode().Perm()&0o005 != 0o005 {
			os.Chmod(p, st.Mode().Perm()|0o005)
		}
	}
	os.Chmod(path, 0o644)
	user := fmt.Sprintf("bench%d@example.org", d.n)
	cmd := exec.Command("doveadm", "-c", d.conf, "import", "-u", user, "mbox:"+srcDir+":INBOX="+path, "", "all")
	t0 := time.Now()
	out, err := cmd.CombinedOutput()
	wall := time.Since(t0)
	if err != nil {
		return 0, 0, fmt.Errorf("doveadm import: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return wall, cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss, nil
}

// countMaildir counts the messages Dovecot stored for the last import.
func (d *dovecot) countMaildir() int {
	n := 0
	for _, sub := range []string{"cur", "new"} {
		es, _ := os.ReadDir(filepath.Join(d.dir, "home", fmt.Sprintf("bench%d@example.org", d.n), "Maildir", sub))
		n += len(es)
	}
	return n
}
