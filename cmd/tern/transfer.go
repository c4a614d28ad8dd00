package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/tern-mail/tern/internal/control"
	"github.com/tern-mail/tern/internal/transfer"
)

// progress returns a Progress callback drawing a bar on a terminal, or nil.
func progress(e *env, what string) (func(done, total int64), func()) {
	if !isTerminal(os.Stdout) || e.stdout != os.Stdout {
		return nil, func() {}
	}
	var bar *progressbar.ProgressBar
	return func(done, total int64) {
			if bar == nil {
				bar = progressbar.DefaultBytes(total, what)
			}
			bar.Set64(done)
		}, func() {
			if bar != nil {
				bar.Finish()
				fmt.Fprintln(e.stdout)
			}
		}
}

func runImport(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("tern import", flag.ContinueOnError)
	var loc location
	loc.register(fs)
	mailbox := fs.String("mailbox", "", "target mailbox (default INBOX, or each folder to its own mailbox)")
	mboxo := fs.Bool("mboxo", false, "read mbox files as mboxo (no >From unquoting)")
	pos, err := parseFlags(fs, e, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return usagef("want ADDRESS PATH")
	}
	cfg, st, err := loc.open(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	acct, err := st.AccountByAddress(ctx, pos[0])
	if err != nil {
		return fmt.Errorf("%s: %w", pos[0], err)
	}
	prog, done := progress(e, "importing")
	start := time.Now()
	stats, err := transfer.Import(ctx, st, acct, transfer.ImportOptions{Path: pos[1], Mailbox: *mailbox, MboxO: *mboxo, Progress: prog})
	done()
	if stats.Messages > 0 {
		control.Notify(ctx, cfg.Data, "account-changed", strconv.FormatInt(acct.ID, 10))
	}
	fmt.Fprintf(e.stdout, "imported %d messages (%d duplicates skipped, %d mailboxes created) in %s\n",
		stats.Messages, stats.Duplicates, stats.Mailboxes, time.Since(start).Round(time.Millisecond))
	return err
}

func runExport(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("tern export", flag.ContinueOnError)
	var loc location
	loc.register(fs)
	out := fs.String("o", "", "output: an mbox file (one mailbox) or a directory (required)")
	format := fs.String("format", "mbox", "mbox or maildir")
	mailbox := fs.String("mailbox", "", "export only this mailbox")
	pos, err := parseFlags(fs, e, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || *out == "" {
		return usagef("want ADDRESS and -o PATH")
	}
	if *format != "mbox" && *format != "maildir" {
		return usagef("-format must be mbox or maildir")
	}
	_, st, err := loc.open(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	acct, err := st.AccountByAddress(ctx, pos[0])
	if err != nil {
		return fmt.Errorf("%s: %w", pos[0], err)
	}
	prog, done := progress(e, "exporting")
	stats, err := transfer.Export(ctx, st, acct, transfer.ExportOptions{Path: *out, Format: *format, Mailbox: *mailbox, Progress: prog})
	done()
	fmt.Fprintf(e.stdout, "exported %d messages from %d mailboxes to %s\n", stats.Messages, stats.Mailboxes, *out)
	return err
}
