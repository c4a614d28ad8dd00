package smtpserver

import (
	"bytes"
	"io"
	"slices"
	"time"

	"github.com/tern-mail/tern/internal/dsn"
	"github.com/tern-mail/tern/internal/store"
)

// maxDSNOriginal caps how much of the original a success notification
// quotes with RET=FULL (RFC 3461 §4.3 lets an MTA return only the header).
const maxDSNOriginal = 1 << 20

// notifyDelivered sends the "delivered" notifications that RFC 3461 §6.2.2
// asks of the final MTA for recipients with NOTIFY=SUCCESS. They go through
// the queue from the null sender (so they can never loop). A failure is
// logged, never returned: the message itself is already delivered.
func (s *session) notifyDelivered(tx *transaction, blob store.Blob) {
	if tx.from.IsNull() || s.srv.cfg.Queue == nil {
		return
	}
	var rcpts []dsn.Recipient
	for _, r := range tx.rcpts {
		if r.local && slices.Contains(r.notify, "SUCCESS") {
			rcpts = append(rcpts, dsn.Recipient{
				OriginalRecipient: r.orcpt, FinalRecipient: r.addr.String(),
				Action: dsn.ActionDelivered, Status: "2.0.0", LastAttempt: time.Now(),
			})
		}
	}
	if len(rcpts) == 0 {
		return
	}
	original, err := s.readBlob(blob.ID, maxDSNOriginal)
	if err != nil {
		s.log.Warn("success notification: reading the message", "id", tx.id, "err", err)
		return
	}
	msg, err := dsn.Build(&dsn.Message{
		Hostname: s.srv.cfg.Hostname, To: tx.from.String(), Original: original,
		Full:   tx.opts.Return == "FULL" && blob.Size <= maxDSNOriginal,
		Report: &dsn.Report{EnvID: tx.opts.EnvelopeID, ArrivalDate: tx.start, Recipients: rcpts},
	})
	if err != nil {
		s.log.Warn("success notification: building", "id", tx.id, "err", err)
		return
	}
	sp, err := s.srv.del.Spool(s.ctx, nil, bytes.NewReader(msg), 0)
	if err != nil {
		s.log.Warn("success notification: storing", "id", tx.id, "err", err)
		return
	}
	m := &QueueMessage{From: "", Recipients: []QueueRecipient{{Address: tx.from.String(), Notify: []string{"NEVER"}}}, Blob: sp.Blob}
	if _, err := s.srv.cfg.Queue.Enqueue(s.ctx, m); err != nil {
		s.srv.del.Discard(s.ctx, sp)
		s.log.Warn("success notification: enqueue", "id", tx.id, "err", err)
		return
	}
	s.log.Info("success notification queued", "id", tx.id, "to", tx.from.String(), "rcpts", len(rcpts))
}

func (s *session) readBlob(id string, max int64) ([]byte, error) {
	f, err := s.srv.cfg.Store.OpenBlob(id)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, max))
}
