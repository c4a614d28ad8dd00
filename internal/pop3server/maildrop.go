package pop3server

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/tern-mail/tern/internal/store"
)

// msg is one message of the maildrop snapshot.
type msg struct {
	uid     uint32
	blobID  string
	size    int64 // as stored
	wire    int64 // as sent (CRLF line ends); -1 until known
	seen    bool
	deleted bool
}

// maildrop is the INBOX as it was at login (RFC 1939 §8: message numbers
// stay fixed for the session; mail delivered meanwhile shows at the next
// login).
type maildrop struct {
	st          *store.Store
	mailboxID   int64
	uidValidity uint32
	msgs        []msg
	sizesKnown  bool
	pendingSeen []uint32
}

func loadMaildrop(ctx context.Context, st *store.Store, cache *listingCache, accountID int64) (*maildrop, error) {
	mb, err := st.MailboxByName(ctx, accountID, "INBOX")
	if err != nil {
		return nil, err
	}
	list, ok := cache.get(mb)
	if !ok {
		if list, err = st.DropListing(ctx, mb.ID); err != nil {
			return nil, err
		}
		cache.put(mb, list)
	}
	d := &maildrop{st: st, mailboxID: mb.ID, uidValidity: mb.UIDValidity, msgs: make([]msg, len(list))}
	for i, m := range list {
		d.msgs[i] = msg{uid: m.UID, blobID: m.BlobID, size: m.Size, wire: -1, seen: m.Seen}
	}
	return d, nil
}

// uidl is the unique-id of a message (RFC 1939 §7): UIDVALIDITY and UID,
// stable for the life of the message, the same for every session, and
// printable ASCII 0x21-0x7E.
func (d *maildrop) uidl(m *msg) string {
	return strconv.FormatUint(uint64(d.uidValidity), 10) + "." + strconv.FormatUint(uint64(m.uid), 10)
}

// ensureSizes computes the wire sizes: the stored size plus a CR for
// every bare LF, which delivery counted when it parsed the message.
// Messages the parse data does not cover are measured from their bytes.
func (d *maildrop) ensureSizes(ctx context.Context, cache *sizeCache, measure func(blobID string) (int64, error)) error {
	if d.sizesKnown {
		return nil
	}
	if cache.fill(d.msgs) {
		d.sizesKnown = true
		return nil
	}
	defer cache.add(d.msgs)
	const chunk = 1000
	for i := 0; i < len(d.msgs); i += chunk {
		part := d.msgs[i:min(i+chunk, len(d.msgs))]
		k := 0
		err := d.st.WireSizes(ctx, d.mailboxID, part[0].uid, part[len(part)-1].uid, func(uid uint32, wire int64) {
			for k < len(part) && part[k].uid < uid {
				k++
			}
			if k < len(part) && part[k].uid == uid && part[k].wire < 0 {
				part[k].wire = wire
			}
		})
		if err != nil {
			return err
		}
		for j := range part {
			m := &part[j]
			if m.wire >= 0 {
				continue
			}
			n, err := measure(m.blobID)
			if errors.Is(err, store.ErrNotFound) {
				m.wire = m.size // expunged meanwhile; RETR will say so
				continue
			} else if err != nil {
				return fmt.Errorf("measuring message %d: %w", m.uid, err)
			}
			m.wire = n
		}
	}
	d.sizesKnown = true
	return nil
}

// markSeen queues \Seen for a downloaded message; flush writes the queue.
func (d *maildrop) markSeen(m *msg) {
	if !m.seen {
		m.seen = true
		d.pendingSeen = append(d.pendingSeen, m.uid)
	}
}

// writeSeen sets \Seen on uids (FlagsAdd: other flags, set by IMAP
// clients meanwhile, stay as they are).
func (d *maildrop) writeSeen(ctx context.Context, uids []uint32) error {
	if len(uids) == 0 {
		return nil
	}
	_, _, err := d.st.UpdateFlags(ctx, d.mailboxID, store.FlagUpdate{UIDs: uids, Op: store.FlagsAdd, Flags: []string{`\Seen`}})
	return err
}
