package queue

import (
	"context"
	"errors"

	"github.com/tern-mail/tern/internal/message"
	"github.com/tern-mail/tern/internal/store"
)

// deliverLocal puts the message into the INBOX of local recipients
// (notifications to local senders, sendmail). An alias pointing outside
// is queued again for its remote targets.
func (q *Queue) deliverLocal(ctx context.Context, e *store.QueueEntry, idx []int) []outcome {
	outs := make([]outcome, len(idx))
	f, err := q.st.OpenBlob(e.Blob.ID)
	if err != nil {
		return fill(len(idx), temp("4.3.0", "message file: %v", err))
	}
	parsed, err := message.Parse(f)
	f.Close()
	if err != nil {
		return fill(len(idx), temp("4.3.0", "parse: %v", err))
	}
	for k, i := range idx {
		addr := e.Recipients[i].Address
		res, err := q.st.Resolve(ctx, addr)
		if errors.Is(err, store.ErrNotFound) {
			outs[k] = perm(550, "5.1.1", "<%s>: no such user", addr)
			continue
		}
		if err != nil {
			outs[k] = temp("4.3.0", "resolving <%s>: %v", addr, err)
			continue
		}
		outs[k] = outcome{ok: true, code: 250, enhanced: "2.0.0", text: "delivered", local: true, remote: q.cfg.Hostname}
		if len(res.Remote) > 0 {
			fwd := &store.QueueEntry{AccountID: e.AccountID, From: e.From, Blob: e.Blob, Created: q.cfg.Now()}
			for _, r := range res.Remote {
				fwd.Recipients = append(fwd.Recipients, store.QueueRecipient{Address: r, Notify: e.Recipients[i].Notify})
			}
			if _, err := q.st.QueueAdd(ctx, fwd); err != nil {
				outs[k] = temp("4.3.0", "forwarding <%s>: %v", addr, err)
				continue
			}
			q.poke()
		}
		if len(res.Accounts) == 0 {
			continue
		}
		d := &store.Delivery{Blob: e.Blob, Parsed: parsed, InternalDate: q.cfg.Now()}
		for _, a := range res.Accounts {
			d.Targets = append(d.Targets, store.Target{AccountID: a.ID})
		}
		got, err := q.st.Deliver(ctx, d)
		if err != nil {
			outs[k] = temp("4.3.0", "storing for <%s>: %v", addr, err)
			continue
		}
		for _, g := range got {
			if errors.Is(g.Err, store.ErrOverQuota) {
				outs[k] = temp("4.2.2", "<%s>: mailbox full", addr)
			} else if g.Err != nil {
				outs[k] = temp("4.3.0", "storing for <%s>: %v", addr, g.Err)
			}
		}
	}
	return outs
}
