package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tern-mail/tern/internal/account"
	"github.com/tern-mail/tern/internal/store"
	"github.com/tern-mail/tern/internal/transfer"
)

// bigPrepare builds a data directory with one user whose INBOX holds n
// generated messages, imported through the same code as `tern import`.
func bigPrepare(args []string) error {
	fs := flag.NewFlagSet("bigprepare", flag.ExitOnError)
	data := fs.String("data", "", "tern data directory to create")
	n := fs.Int("n", 1_000_000, "messages")
	fs.Parse(args)
	mboxPath := filepath.Join(*data, "..", "big.mbox")
	if err := writeMbox(mboxPath, *n); err != nil {
		return err
	}
	defer os.Remove(mboxPath)
	ctx := context.Background()
	st, err := store.Open(ctx, *data, store.Options{})
	if err != nil {
		return err
	}
	defer st.Close()
	if err := st.AddDomain(ctx, "bench.test"); err != nil && !errors.Is(err, store.ErrExists) {
		return err
	}
	acct, err := account.New(st).Add(ctx, userName(1), password)
	if err != nil {
		return err
	}
	start := time.Now()
	stats, err := transfer.Import(ctx, st, acct, transfer.ImportOptions{Path: mboxPath, IgnoreQuota: true})
	if err != nil {
		return err
	}
	fmt.Printf("big: imported %d messages in %.1fs\n", stats.Messages, time.Since(start).Seconds())
	return nil
}

func writeMbox(path string, n int) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	date := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := 0; i < n; i++ {
		d := date.Add(time.Duration(i) * time.Minute)
		subject := fmt.Sprintf("message number %d", i)
		if i == n/2 {
			subject = "the needle in the haystack"
		}
		fmt.Fprintf(w, "From sender%d@example.net %s\n", i%100, d.Format("Mon Jan _2 15:04:05 2006"))
		fmt.Fprintf(w, "From: Sender %d <sender%d@example.net>\nTo: user1@bench.test\nSubject: %s\nDate: %s\nMessage-ID: <%d@example.net>\n\n",
			i%100, i%100, subject, d.Format(time.RFC1123Z), i)
		fmt.Fprintf(w, "Body of message %d.\n%s\n\n", i, strings.Repeat("lorem ipsum ", 8))
	}
	if err := w.Flush(); err != nil {
		return err
	}
	return f.Close()
}

// bigQuery measures SELECT, UID FETCH 1:* (FLAGS) and a header SEARCH on
// the big mailbox, with the server's RSS around them.
func bigQuery(args []string) error {
	fs := flag.NewFlagSet("bigquery", flag.ExitOnError)
	addr := fs.String("addr", "", "server address")
	pid := fs.Int("pid", 0, "server process id (for memory)")
	fs.Parse(args)
	c, err := dial(*addr)
	if err != nil {
		return err
	}
	defer c.close()
	c.timeout = 30 * time.Minute
	if err := c.cmd("LOGIN %s %s", userName(1), password); err != nil {
		return err
	}
	rss0 := rssKiB(*pid)
	timed := func(what, format string, a ...any) error {
		t0 := time.Now()
		if err := c.cmd(format, a...); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		fmt.Printf("big: %-28s %8.1f ms  (%d response lines)\n", what, float64(time.Since(t0).Microseconds())/1000, len(c.lines))
		return nil
	}
	for _, q := range []struct{ what, cmd string }{
		{"SELECT INBOX (cold)", "SELECT INBOX"},
		{"SELECT INBOX (warm)", "SELECT INBOX"},
		{"UID FETCH 1:* (FLAGS)", "UID FETCH 1:* (FLAGS)"},
		{"SEARCH HEADER Subject", `SEARCH HEADER Subject "needle"`},
		{"SEARCH SUBJECT (envelope)", `SEARCH SUBJECT "needle"`},
		{"FETCH 500000 BODY[]", "FETCH 500000 BODY[]"},
	} {
		if err := timed(q.what, "%s", q.cmd); err != nil {
			return err
		}
	}
	if *pid != 0 {
		rss := rssKiB(*pid)
		// The store's readers map the database file: pages they touched
		// count in RSS as file pages (page cache), apart from the
		// process's own (anonymous) memory.
		fmt.Printf("big: server RSS %d KiB after login, %d KiB after the queries (own memory %d KiB, mapped database pages %d KiB); peak %d KiB\n",
			rss0, rss, statusKiB(*pid, "RssAnon"), statusKiB(*pid, "RssFile"), statusKiB(*pid, "VmHWM"))
	}
	return c.cmd("LOGOUT")
}
