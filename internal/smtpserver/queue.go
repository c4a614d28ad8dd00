package smtpserver

import (
	"context"

	"github.com/tern-mail/tern/internal/store"
)

// Enqueuer takes a message for remote recipients into the durable outbound
// queue; the message is durable when Enqueue returns without error. cmd/tern
// wires internal/queue to it.
type Enqueuer interface {
	Enqueue(ctx context.Context, m *QueueMessage) (int64, error)
}

// QueueRecipient and QueueMessage mirror internal/queue's Recipient and
// Message. They live here until internal/queue exists; then they become
// aliases of the queue's types (type QueueMessage = queue.Message).
type QueueRecipient struct {
	Address string
	Notify  []string // RFC 3461 NOTIFY values
	ORcpt   string   // RFC 3461 ORCPT, "type;address"
}

// QueueMessage is one message for the outbound queue.
type QueueMessage struct {
	AccountID  int64 // 0 for forwarded inbound mail
	From       string
	Recipients []QueueRecipient
	EnvID      string // RFC 3461 ENVID
	Ret        string // RFC 3461 RET: FULL or HDRS
	RequireTLS bool   // RFC 8689
	Blob       store.Blob
}
