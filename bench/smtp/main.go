// Command smtpbench is the helper of bench/smtp/run.sh: it waits until a
// Maildir holds a number of messages (Postfix delivers after its 250, so
// its rate is counted when the messages are durably in the mailbox) and
// prints the elapsed time since a given start.
//
//	smtpbench wait-maildir DIR COUNT START_UNIX_NANO TIMEOUT
package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

func main() {
	if len(os.Args) != 6 || os.Args[1] != "wait-maildir" {
		fmt.Fprintln(os.Stderr, "usage: smtpbench wait-maildir DIR COUNT START_UNIX_NANO TIMEOUT")
		os.Exit(2)
	}
	want, err1 := strconv.Atoi(os.Args[3])
	startNs, err2 := strconv.ParseInt(os.Args[4], 10, 64)
	timeout, err3 := time.ParseDuration(os.Args[5])
	if err1 != nil || err2 != nil || err3 != nil {
		fmt.Fprintln(os.Stderr, "smtpbench: bad arguments")
		os.Exit(2)
	}
	start := time.Unix(0, startNs)
	deadline := time.Now().Add(timeout)
	for {
		n := count(filepath.Join(os.Args[2], "new")) + count(filepath.Join(os.Args[2], "cur"))
		if n >= want {
			// Seconds since start, as run.sh's awk expects.
			fmt.Printf("%.3f\n", time.Since(start).Seconds())
			return
		}
		if time.Now().After(deadline) {
			fmt.Fprintf(os.Stderr, "smtpbench: only %d of %d messages after %v\n", n, want, timeout)
			os.Exit(1)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// count returns the number of entries in dir (0 if it does not exist).
func count(dir string) int {
	f, err := os.Open(dir)
	if err != nil {
		return 0
	}
	defer f.Close()
	n := 0
	for {
		names, err := f.Readdirnames(4096)
		n += len(names)
		if err == io.EOF || err != nil {
			return n
		}
	}
}
