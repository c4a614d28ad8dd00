package smtpserver

import (
	"context"

	"github.com/tern-mail/tern/internal/queue"
)

// Enqueuer takes a message for remote recipients into the durable outbound
// queue; the message is durable when Enqueue returns without error. cmd/tern
// wires internal/queue to it (*queue.Queue satisfies it directly).
type Enqueuer interface {
	Enqueue(ctx context.Context, m *QueueMessage) (int64, error)
}

// QueueMessage and QueueRecipient are the queue's types, named here so
// that callers written against the earlier stand-ins keep compiling.
type (
	QueueMessage   = queue.Message
	QueueRecipient = queue.Recipient
)

var _ Enqueuer = (*queue.Queue)(nil)
