package queue

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/tern-mail/tern/internal/dsn"
	"github.com/tern-mail/tern/internal/store"
)

// wants reports whether a recipient's NOTIFY asks for a kind of
// notification. Without NOTIFY, failures and delays are reported
// (RFC 3461 §4.1 leaves DELAY to the MTA).
func wants(notify []string, kind string) bool {
	if len(notify) == 0 {
		return kind == "FAILURE" || kind == "DELAY"
	}
	for _, n := range notify {
		if n == "NEVER" {
			return false
		}
		if n == kind {
			return true
		}
	}
	return false
}

// finish applies an attempt's outcomes, expires old entries, sends the
// notifications due and writes the entry back (removing it when done).
func (q *Queue) finish(ctx context.Context, e *store.QueueEntry, results map[int]outcome, log *slog.Logger) {
	// The outcome is recorded even when the delivery was interrupted by
	// shutdown.
	ctx = context.WithoutCancel(ctx)
	now := q.cfg.Now()
	e.Attempts++
	var failed, delayed, succeeded []int
	var lastErr string
	for i, o := range results {
		r := &e.Recipients[i]
		r.Code, r.Enhanced, r.Reply, r.RemoteMTA = o.code, o.enhanced, o.text, o.remote
		switch {
		case o.ok:
			r.Status = store.QueueDelivered
			if wants(r.Notify, "SUCCESS") && (o.relayed || o.local) {
				succeeded = append(succeeded, i)
			}
			log.Info("delivered", "rcpt", r.Address, "host", o.remote, "reply", o.code)
		case o.perm:
			r.Status = store.QueueFailed
			failed = append(failed, i)
			log.Info("failed", "rcpt", r.Address, "host", o.remote, "reply", o.String())
		default:
			lastErr = o.String()
			log.Info("deferred", "rcpt", r.Address, "host", o.remote, "reply", o.String())
		}
	}
	expired := now.Sub(e.Created) >= q.cfg.MaxLifetime
	for i := range e.Recipients {
		r := &e.Recipients[i]
		if r.Status != store.QueuePending {
			continue
		}
		if expired {
			// RFC 3463 X.4.7: delivery time expired. A REQUIRETLS
			// message held for want of TLS keeps its X.7.10 (RFC 8689
			// §4.2.1), which becomes 5.7.10 in the notification.
			r.Status = store.QueueFailed
			if !e.RequireTLS || !strings.HasPrefix(r.Enhanced, "4.7.") {
				r.Enhanced = "4.4.7"
			}
			r.Reply = "delivery time expired; last error: " + r.Reply
			failed = append(failed, i)
			continue
		}
		if q.cfg.DelayWarning > 0 && now.Sub(e.Created) >= q.cfg.DelayWarning && !r.DelayNotified {
			r.DelayNotified = true
			delayed = append(delayed, i)
		}
	}
	e.LastError = lastErr
	next := now.Add(q.backoff(e.Attempts))
	if end := e.Created.Add(q.cfg.MaxLifetime); next.After(end) {
		next = end
	}
	e.NextAttempt = next
	// Notifications are queued before the entry is updated: a crash in
	// between repeats a notification rather than losing one.
	for _, n := range []struct {
		idx    []int
		action string
		kind   string
	}{{failed, dsn.ActionFailed, "FAILURE"}, {delayed, dsn.ActionDelayed, "DELAY"}, {succeeded, "", "SUCCESS"}} {
		var sel []int
		for _, i := range n.idx {
			if wants(e.Recipients[i].Notify, n.kind) {
				sel = append(sel, i)
			}
		}
		if len(sel) > 0 {
			if err := q.notify(ctx, e, sel, n.action, results); err != nil {
				log.Error("queueing notification", "err", err)
			}
		}
	}
	if err := q.st.QueueUpdate(ctx, e); err != nil && !errGone(err) {
		log.Error("queue update", "err", err)
	}
}

func (o outcome) String() string {
	s := fmt.Sprintf("%d %s %s", o.code, o.enhanced, o.text)
	return strings.TrimSpace(s)
}

// notify queues a delivery status notification to the sender about the
// recipients idx. Never for the null sender: notifications are sent from
// the null sender, so they can never cause another (RFC 3461 §6.2).
func (q *Queue) notify(ctx context.Context, e *store.QueueEntry, idx []int, action string, results map[int]outcome) error {
	if e.From == "" {
		return nil
	}
	rep := &dsn.Report{ReportingMTA: q.cfg.Hostname, EnvID: e.EnvID, ArrivalDate: e.Created}
	now := q.cfg.Now()
	for _, i := range idx {
		r := e.Recipients[i]
		rc := dsn.Recipient{
			OriginalRecipient: r.ORcpt,
			FinalRecipient:    r.Address,
			Action:            action,
			Status:            r.Enhanced,
			RemoteMTA:         r.RemoteMTA,
			LastAttempt:       now,
		}
		if r.Reply != "" {
			rc.Diagnostic = strings.TrimSpace(fmt.Sprintf("%d %s %s", r.Code, r.Enhanced, r.Reply))
		}
		if action == dsn.ActionFailed && strings.HasPrefix(rc.Status, "4") {
			rc.Status = "5" + rc.Status[1:] // a final failure has class 5
		}
		if action == dsn.ActionDelayed {
			rc.WillRetryUntil = e.Created.Add(q.cfg.MaxLifetime)
		}
		if action == "" {
			rc.Action, rc.Status = dsn.ActionRelayed, "2.0.0"
			if o := results[i]; o.local {
				rc.Action = dsn.ActionDelivered
			}
		}
		if rc.Status == "" {
			rc.Status = map[string]string{dsn.ActionFailed: "5.0.0", dsn.ActionDelayed: "4.0.0"}[action]
		}
		rep.Recipients = append(rep.Recipients, rc)
	}
	f, err := q.st.OpenBlob(e.Blob.ID)
	if err != nil {
		return err
	}
	full := e.Ret == "FULL"
	var orig []byte
	if full {
		orig, err = io.ReadAll(io.LimitReader(f, 10<<20))
	} else {
		orig, err = readHeader(f, 256<<10)
	}
	f.Close()
	if err != nil {
		return err
	}
	msg, err := dsn.Build(&dsn.Message{Hostname: q.cfg.Hostname, To: e.From, Report: rep, Original: orig, Full: full, Date: now})
	if err != nil {
		return err
	}
	w, err := q.st.NewBlob()
	if err != nil {
		return err
	}
	if _, err := w.Write(msg); err != nil {
		w.Abort()
		return err
	}
	blob, err := w.Commit()
	if err != nil {
		return err
	}
	_, err = q.st.QueueAdd(ctx, &store.QueueEntry{
		AccountID: e.AccountID, From: "", Blob: blob, Created: now,
		Recipients: []store.QueueRecipient{{Address: e.From}},
	})
	if err != nil {
		q.st.DiscardBlob(ctx, blob.ID)
		return err
	}
	q.poke()
	return nil
}
