package pop3server

import (
	"bufio"
	"errors"
	"io"
	"io/fs"
	"strconv"

	"github.com/tern-mail/tern/internal/store"
)

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// message resolves a message-number argument to a live message.
func (s *session) message(arg string) (*msg, int, *reply) {
	n, ok := parseMsgNum(arg)
	if !ok {
		r := badReply("invalid message number " + strconv.Quote(arg))
		return nil, 0, &r
	}
	if n > len(s.drop.msgs) {
		r := errReply("", "no such message, only "+itoa(int64(len(s.drop.msgs)))+" in maildrop")
		return nil, 0, &r
	}
	m := &s.drop.msgs[n-1]
	if m.deleted {
		r := errReply("", "message "+arg+" already deleted")
		return nil, 0, &r
	}
	return m, n, nil
}

func (s *session) sizes() *reply {
	ctx, cancel := s.storeCtx()
	defer cancel()
	if err := s.drop.ensureSizes(ctx, s.srv.sizes, s.measure); err != nil {
		s.log.Error("pop3: computing sizes", "err", err)
		r := errReply("SYS/TEMP", "cannot read the mailbox now, try again later")
		return &r
	}
	return nil
}

// measure reads a message to find its wire size.
func (s *session) measure(blobID string) (int64, error) {
	f, err := s.srv.cfg.Store.OpenBlob(blobID)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, store.ErrNotFound
	} else if err != nil {
		return 0, err
	}
	defer f.Close()
	return crlfSize(f, s.blobBuf)
}

func (s *session) cmdStat(Command) reply {
	if r := s.sizes(); r != nil {
		return *r
	}
	var n, size int64
	for _, m := range s.drop.msgs {
		if !m.deleted {
			n++
			size += m.wire
		}
	}
	return okReply(itoa(n) + " " + itoa(size))
}

func (s *session) cmdList(c Command) reply {
	if r := s.sizes(); r != nil {
		return *r
	}
	if len(c.Args) == 1 {
		m, n, r := s.message(c.Args[0])
		if r != nil {
			return *r
		}
		return okReply(itoa(int64(n)) + " " + itoa(m.wire))
	}
	lines := make([]string, 0, len(s.drop.msgs))
	var total int64
	for i, m := range s.drop.msgs {
		if !m.deleted {
			lines = append(lines, itoa(int64(i+1))+" "+itoa(m.wire))
			total += m.wire
		}
	}
	return multiReply(itoa(int64(len(lines)))+" messages ("+itoa(total)+" octets)", lines)
}

func (s *session) cmdUidl(c Command) reply {
	if len(c.Args) == 1 {
		m, n, r := s.message(c.Args[0])
		if r != nil {
			return *r
		}
		return okReply(itoa(int64(n)) + " " + s.drop.uidl(m))
	}
	lines := make([]string, 0, len(s.drop.msgs))
	for i := range s.drop.msgs {
		if m := &s.drop.msgs[i]; !m.deleted {
			lines = append(lines, itoa(int64(i+1))+" "+s.drop.uidl(m))
		}
	}
	return multiReply("unique-id listing follows", lines)
}

func (s *session) cmdRetr(c Command) reply {
	return s.send(c.Args[0], -1)
}

func (s *session) cmdTop(c Command) reply {
	lines, ok := parseLines(c.Args[1])
	if !ok {
		return badReply("invalid line count " + strconv.Quote(c.Args[1]))
	}
	return s.send(c.Args[0], lines)
}

// send answers RETR (bodyLines < 0) and TOP: the status line, then the
// message streamed from its blob.
func (s *session) send(arg string, bodyLines int) reply {
	m, n, r := s.message(arg)
	if r != nil {
		return *r
	}
	var seen *msg
	if bodyLines < 0 && s.srv.cfg.MarkSeenOnRetr {
		seen = m
	}
	if bodyLines < 0 {
		wire, ok := s.ahead.get(s.storeCtx, s.drop, n-1)
		if ok {
			// RFC 1939 §11 asks only that the status line begin "+OK";
			// the octet count is Dovecot's and Courier's habit.
			text := "message follows"
			if m.wire >= 0 {
				text = itoa(m.wire) + " octets"
			}
			return reply{ok: true, text: text, wire: wire, seen: seen}
		}
	}
	f, err := s.openMessage(m)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, store.ErrNotFound) {
		return errReply("", "message "+arg+" was removed by another client")
	} else if err != nil {
		s.log.Error("pop3: opening message", "uid", m.uid, "err", err)
		return errReply("SYS/TEMP", "cannot read the message now, try again later")
	}
	text := "message follows"
	if bodyLines < 0 && m.wire >= 0 {
		text = itoa(m.wire) + " octets"
	}
	return reply{ok: true, text: text, seen: seen, body: func(w *bufio.Writer) error {
		defer f.Close()
		return writeBody(w, s.blobBuf, f, bodyLines)
	}}
}

// retrieved queues \Seen for a message sent with RETR, written in
// batches.
func (s *session) retrieved(m *msg) {
	s.drop.markSeen(m)
	if len(s.drop.pendingSeen) >= s.srv.seenBatch {
		s.flushSeenAsync()
	}
}

// openMessage opens a message's bytes for sending.
func (s *session) openMessage(m *msg) (io.ReadCloser, error) {
	if store.Inline(m.size) {
		// Small messages live inside the database, not in files.
		return s.srv.cfg.Store.OpenBlob(m.blobID)
	}
	path, err := s.srv.cfg.Store.BlobPath(m.blobID)
	if err != nil {
		return nil, err
	}
	f, err := openBlobFile(path, m.size)
	if errors.Is(err, fs.ErrNotExist) {
		// Stored before the size limit for inline blobs changed.
		return s.srv.cfg.Store.OpenBlob(m.blobID)
	}
	return f, err
}

// flushSeenAsync writes the queued \Seen marks in the background, one
// batch at a time, so that downloads do not wait for a commit.
func (s *session) flushSeenAsync() {
	if s.seenBusy != nil {
		select {
		case <-s.seenBusy:
			s.seenBusy = nil
		default:
			return // the next RETR tries again
		}
	}
	uids, drop, log := s.drop.pendingSeen, s.drop, s.log
	s.drop.pendingSeen = nil
	done := make(chan struct{})
	s.seenBusy = done
	go func() {
		defer close(done)
		ctx, cancel := s.storeCtx()
		defer cancel()
		if err := drop.writeSeen(ctx, uids); err != nil {
			log.Error("pop3: marking messages seen", "err", err)
		}
	}()
}

// flushSeen waits for a background flush and writes the remaining marks.
func (s *session) flushSeen() {
	if s.seenBusy != nil {
		<-s.seenBusy
		s.seenBusy = nil
	}
	ctx, cancel := s.storeCtx()
	defer cancel()
	if err := s.drop.writeSeen(ctx, s.drop.pendingSeen); err != nil {
		s.log.Error("pop3: marking messages seen", "err", err)
	}
	s.drop.pendingSeen = nil
}

func (s *session) cmdDele(c Command) reply {
	m, n, r := s.message(c.Args[0])
	if r != nil {
		return *r
	}
	m.deleted = true
	return okReply("message " + itoa(int64(n)) + " deleted")
}

func (s *session) cmdRset(Command) reply {
	for i := range s.drop.msgs {
		s.drop.msgs[i].deleted = false
	}
	return okReply("maildrop has " + itoa(int64(len(s.drop.msgs))) + " messages")
}

// update is QUIT in the TRANSACTION state: the UPDATE state (RFC 1939
// §6) removes the messages marked deleted, through the store so that IMAP
// sessions see expunges, then ends the session.
func (s *session) update() reply {
	s.quit = true
	var uids []uint32
	for _, m := range s.drop.msgs {
		if m.deleted {
			uids = append(uids, m.uid)
		}
	}
	s.flushSeen()
	r := okReply(s.srv.cfg.Hostname + " POP3 server signing off")
	if len(uids) > 0 {
		ctx, cancel := s.storeCtx()
		removed, err := s.srv.cfg.Store.Expunge(ctx, s.drop.mailboxID, uids)
		cancel()
		if err != nil {
			s.log.Error("pop3: expunging", "err", err)
			r = errReply("SYS/TEMP", "some deleted messages were not removed")
		} else {
			s.log.Info("pop3: expunged", "count", len(removed))
			r.text += " (" + itoa(int64(len(uids))) + " messages deleted)"
		}
	}
	// The maildrop is free once the UPDATE state is done, before the
	// reply: a client that reconnects on reading +OK must not get
	// IN-USE.
	if s.locked {
		s.srv.unlock(s.acct.ID)
		s.locked = false
	}
	r.close = true
	return r
}
