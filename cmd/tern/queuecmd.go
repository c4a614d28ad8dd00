package main

import (
	"context"
	"fmt"
	"os"
	"os/user"
	"strconv"
	"strings"
	"time"

	"github.com/tern-mail/tern/internal/control"
	"github.com/tern-mail/tern/internal/sendmail"
	"github.com/tern-mail/tern/internal/store"
)

func runQueue(ctx context.Context, e *env, args []string) error {
	pos, cfg, st, err := adminArgs(ctx, e, "queue", args)
	if err != nil {
		return err
	}
	defer st.Close()
	q, err := newQueue(cfg, st, nil)
	if err != nil {
		return err
	}
	id := func() (int64, error) {
		if len(pos) != 2 {
			return 0, usagef("%s: want ID", pos[0])
		}
		n, err := strconv.ParseInt(pos[1], 10, 64)
		if err != nil {
			return 0, usagef("bad queue id %q", pos[1])
		}
		return n, nil
	}
	switch pos[0] {
	case "list":
		var after int64
		for {
			entries, err := q.List(ctx, after, 500)
			if err != nil {
				return err
			}
			for _, en := range entries {
				printEntry(e, en, false)
				after = en.ID
			}
			if len(entries) < 500 {
				return nil
			}
		}
	case "show":
		n, err := id()
		if err != nil {
			return err
		}
		en, header, err := q.Show(ctx, n)
		if err != nil {
			return err
		}
		printEntry(e, en, true)
		fmt.Fprintf(e.stdout, "\n%s", header)
		return nil
	case "retry":
		n, err := id()
		if err != nil {
			return err
		}
		if err := q.Retry(ctx, n); err != nil {
			return err
		}
		return wakeQueue(ctx, e, cfg.Data)
	case "all":
		n, err := q.RetryAll(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "%d messages scheduled for delivery now\n", n)
		return wakeQueue(ctx, e, cfg.Data)
	case "drop":
		n, err := id()
		if err != nil {
			return err
		}
		return q.Drop(ctx, n)
	}
	return usagef("unknown subcommand %q", pos[0])
}

func printEntry(e *env, en store.QueueEntry, long bool) {
	from := en.From
	if from == "" {
		from = "<>"
	}
	fmt.Fprintf(e.stdout, "%d\t%s\t%d bytes\tqueued %s\tnext %s\tattempts %d\n", en.ID, from, en.Blob.Size,
		en.Created.Format(time.RFC3339), en.NextAttempt.Format(time.RFC3339), en.Attempts)
	for _, r := range en.Recipients {
		line := fmt.Sprintf("\t%s\t%s", r.Address, r.Status)
		if r.Code != 0 || r.Reply != "" {
			line += fmt.Sprintf("\t%d %s %s", r.Code, r.Enhanced, r.Reply)
		}
		if long && r.RemoteMTA != "" {
			line += "\t(" + r.RemoteMTA + ")"
		}
		fmt.Fprintln(e.stdout, line)
	}
	if long && en.LastError != "" {
		fmt.Fprintf(e.stdout, "\tlast error: %s\n", en.LastError)
	}
}

// runSendmail queues a message read from stdin. The data directory comes
// from $TERN_DATA (sendmail's own flags leave no room for ours), or a
// leading -data DIR.
func runSendmail(ctx context.Context, e *env, args []string) error {
	var loc location
	if len(args) >= 2 && (args[0] == "-data" || args[0] == "-config") {
		if args[0] == "-data" {
			loc.data = args[1]
		} else {
			loc.config = args[1]
		}
		args = args[2:]
	}
	a, err := sendmail.ParseArgs(args)
	if err != nil {
		return usagef("%v", err)
	}
	cfg, st, err := loc.open(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	q, err := newQueue(cfg, st, nil)
	if err != nil {
		return err
	}
	id, err := sendmail.Send(ctx, sendmail.Options{
		Queue: q, Blobs: st, Hostname: cfg.Hostname, DefaultFrom: defaultSender(ctx, st, cfg.Hostname),
	}, a, e.stdin)
	if err != nil {
		return err
	}
	if a.Verbose {
		fmt.Fprintf(e.stderr, "queued as %d\n", id)
	}
	return wakeQueue(ctx, e, cfg.Data)
}

// wakeQueue tells a running server to look at the queue now; without a
// running server the next start delivers.
func wakeQueue(ctx context.Context, e *env, dataDir string) error {
	if _, err := control.Notify(ctx, dataDir, "wake-queue"); err != nil {
		fmt.Fprintf(e.stderr, "warning: the running server did not take the wake-up: %v\n", err)
	}
	return nil
}

// defaultSender is the envelope sender without -f: the local user at the
// first local domain, or at the host name.
func defaultSender(ctx context.Context, st *store.Store, hostname string) string {
	name := "root"
	if u, err := user.Current(); err == nil && u.Username != "" {
		name = u.Username
	}
	if v := os.Getenv("USER"); v != "" && !strings.ContainsAny(v, "@ ") {
		name = v
	}
	if ds, err := st.Domains(ctx); err == nil && len(ds) > 0 {
		return name + "@" + ds[0]
	}
	return name + "@" + hostname
}
