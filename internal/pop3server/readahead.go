package pop3server

import (
	"bytes"
	"context"

	"github.com/tern-mail/tern/internal/store"
)

// Read-ahead bounds, per session: the stored bytes one fill may read and
// the messages it may cover. The wire form kept is at most twice the
// stored size (every line a bare LF that starts with "."), plus one
// message.
const (
	readAheadBytes = 128 << 10
	readAheadMsgs  = 32
)

// readAhead keeps the next messages of a sequential download (RETR 1,
// RETR 2, ...) in wire form, read from the store with one query per
// window instead of one per message. The window starts at one message
// and doubles while the client keeps reading in order, so a client that
// jumps around reads no more than it asks for. Only messages kept inside
// the database take this path; files are read as they are asked for.
type readAhead struct {
	arena []byte // wire form of the messages of the last fill
	spans []span // per message index from lo
	lo    int
	win   int // messages in the next fill
	last  int // index of the last message asked for, -1 before the first
	bytes int // fill budget in stored bytes
}

type span struct {
	off, n int
	ok     bool
}

func newReadAhead(budget int) *readAhead {
	return &readAhead{last: -1, win: 1, bytes: budget}
}

// get returns message i of d in wire form (byte-stuffed, CRLF line ends,
// without the terminating "."), filling the window from the store when
// it is not there (with a context from storeCtx, made only then: most
// calls find the message read already). ok is false when the message must be read another way
// (a file, gone meanwhile, or a store error, which the caller meets
// again on its own path).
func (ra *readAhead) get(storeCtx func() (context.Context, context.CancelFunc), d *maildrop, i int) (wire []byte, ok bool) {
	seq := i == ra.last+1
	ra.last = i
	if j := i - ra.lo; j >= 0 && j < len(ra.spans) && ra.spans[j].ok {
		sp := ra.spans[j]
		return ra.arena[sp.off : sp.off+sp.n], true
	}
	if !store.Inline(d.msgs[i].size) {
		return nil, false
	}
	if seq {
		ra.win = min(2*ra.win, readAheadMsgs)
	} else {
		ra.win = 1
	}
	ctx, cancel := storeCtx()
	defer cancel()
	if err := ra.fill(ctx, d, i); err != nil {
		ra.spans = ra.spans[:0]
		return nil, false
	}
	if len(ra.spans) > 0 && ra.spans[0].ok {
		sp := ra.spans[0]
		return ra.arena[sp.off : sp.off+sp.n], true
	}
	return nil, false
}

// fill reads messages from index i on: up to win of them, within the
// byte budget (the first always), stopping before one kept in a file.
func (ra *readAhead) fill(ctx context.Context, d *maildrop, i int) error {
	end, budget := i, ra.bytes
	for end < len(d.msgs) && end-i < ra.win {
		m := &d.msgs[end]
		if !store.Inline(m.size) || (end > i && int(m.size) > budget) {
			break
		}
		budget -= int(m.size)
		end++
	}
	if cap(ra.arena) > 4*ra.bytes+(256<<10) {
		ra.arena = nil // one odd fill must not pin its memory
	}
	ra.arena = ra.arena[:0]
	ra.lo = i
	ra.spans = append(ra.spans[:0], make([]span, end-i)...)
	k := i
	return d.st.InlineMessages(ctx, d.mailboxID, d.msgs[i].uid, d.msgs[end-1].uid, func(uid uint32, data []byte) error {
		for k < end && d.msgs[k].uid < uid {
			k++
		}
		if k == end || d.msgs[k].uid != uid {
			return nil // not in this session's snapshot
		}
		off := len(ra.arena)
		ra.arena = appendWire(ra.arena, data)
		ra.spans[k-i] = span{off: off, n: len(ra.arena) - off, ok: true}
		return nil
	})
}

// release drops the buffered messages (the session leaves TRANSACTION).
func (ra *readAhead) release() {
	ra.arena, ra.spans = nil, nil
}

// appendWire appends msg as the body of a POP3 multi-line response (RFC
// 1939 §3), without the terminating ".": every line ends in CRLF
// whatever the stored form (a CR before LF is the line end; other CRs are
// kept), a line beginning with "." gets one more ".", and a last line
// without line end gets CRLF. It is writeBody for a message in memory.
func appendWire(dst, msg []byte) []byte {
	// Most stored messages already end every line in CRLF: the bytes are
	// copied in runs, broken only where a CR or a "." goes in.
	if len(msg) > 0 && msg[0] == '.' {
		dst = append(dst, '.')
	}
	start := 0 // msg[start:i] is still to copy as it is
	for i := 0; ; i++ {
		j := bytes.IndexByte(msg[i:], '\n')
		if j < 0 {
			break
		}
		i += j
		if i == 0 || msg[i-1] != '\r' {
			dst = append(dst, msg[start:i]...)
			dst = append(dst, '\r')
			start = i
		}
		if i+1 < len(msg) && msg[i+1] == '.' {
			dst = append(dst, msg[start:i+1]...)
			dst = append(dst, '.')
			start = i + 1
		}
	}
	dst = append(dst, msg[start:]...)
	if len(msg) > 0 && msg[len(msg)-1] != '\n' {
		dst = append(dst, '\r', '\n')
	}
	return dst
}
