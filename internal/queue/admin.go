package queue

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/tern-mail/tern/internal/store"
)

// FormatList writes one line per entry for `tern queue list`: id, age,
// size, attempts, next attempt, sender and pending recipients.
func FormatList(w io.Writer, entries []store.QueueEntry, now time.Time) {
	fmt.Fprintf(w, "%-8s %-8s %8s %4s %-9s %s\n", "ID", "AGE", "SIZE", "TRY", "NEXT", "FROM -> PENDING")
	for _, e := range entries {
		var pending []string
		for _, r := range e.Recipients {
			if r.Status == store.QueuePending {
				pending = append(pending, r.Address)
			}
		}
		from := e.From
		if from == "" {
			from = "<>"
		}
		next := "now"
		if d := e.NextAttempt.Sub(now); d > 0 {
			next = short(d)
		}
		fmt.Fprintf(w, "%-8d %-8s %8d %4d %-9s %s -> %s\n", e.ID, short(now.Sub(e.Created)), e.Blob.Size, e.Attempts, next, from, strings.Join(pending, ", "))
	}
}

// FormatShow writes an entry in full for `tern queue show ID`.
func FormatShow(w io.Writer, e store.QueueEntry, header []byte) {
	from := e.From
	if from == "" {
		from = "<> (delivery status notification)"
	}
	fmt.Fprintf(w, "id:         %d\nfrom:       %s\ncreated:    %s\nattempts:   %d\nnext:       %s\nsize:       %d\n",
		e.ID, from, e.Created.UTC().Format(time.RFC3339), e.Attempts, e.NextAttempt.UTC().Format(time.RFC3339), e.Blob.Size)
	if e.EnvID != "" || e.Ret != "" {
		fmt.Fprintf(w, "envid/ret:  %s %s\n", e.EnvID, e.Ret)
	}
	if e.RequireTLS {
		fmt.Fprintf(w, "requiretls: yes\n")
	}
	for _, r := range e.Recipients {
		status := r.Status
		if status == store.QueuePending {
			status = "pending"
		}
		fmt.Fprintf(w, "rcpt:       %s [%s]", r.Address, status)
		if r.Code != 0 {
			fmt.Fprintf(w, " %d %s %s", r.Code, r.Enhanced, r.Reply)
		}
		if r.RemoteMTA != "" {
			fmt.Fprintf(w, " (%s)", r.RemoteMTA)
		}
		fmt.Fprintln(w)
	}
	if len(header) > 0 {
		fmt.Fprintf(w, "\n%s", strings.ReplaceAll(string(header), "\r\n", "\n"))
	}
}

func short(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	default:
		return fmt.Sprintf("%dd", int(d.Hours()/24))
	}
}
