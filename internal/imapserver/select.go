package imapserver

import (
	"errors"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/tern-mail/tern/internal/imap"
	"github.com/tern-mail/tern/internal/store"
)

// selected is a session's view of its selected mailbox: the sequence
// numbers it has announced (RFC 9051 §2.3.1.2), which only change at the
// moments the RFC allows.
type selected struct {
	mb       store.Mailbox
	readOnly bool
	// uids[i] is the UID of sequence number i+1.
	uids []uint32
	// seen[uid] is the modseq this session last reported for a message,
	// when above base, the mailbox's modseq at SELECT (which every
	// message then had at most): 4 bytes a message plus what changed.
	seen map[uint32]uint64
	base uint64
	// highest is the modseq up to which changes have been applied.
	highest uint64
	// pending holds UIDs expunged elsewhere and not yet announced;
	// pendingFloor is a modseq below all of their expunges.
	pending      map[uint32]bool
	pendingFloor uint64
	// dirty: the store signalled a change not yet read. mustRead: read
	// it at the next chance (this session appended to the mailbox).
	dirty, mustRead bool
	// lastRead is when changes were last read from the store (or found
	// unchanged); mark was taken before the last real read.
	lastRead  time.Time
	mark      store.ChangeMark
	condstore bool
	// saved is the SEARCHRES result (RFC 5182), as UIDs.
	saved []uint32
}

// seqOf returns the 0-based index of uid, or -1.
func (v *selected) seqOf(uid uint32) int {
	i := sort.Search(len(v.uids), func(i int) bool { return v.uids[i] >= uid })
	if i < len(v.uids) && v.uids[i] == uid {
		return i
	}
	return -1
}

// known is the modseq the session last saw for uid.
func (v *selected) known(uid uint32) uint64 {
	if m, ok := v.seen[uid]; ok {
		return m
	}
	return v.base
}

// noteModSeq records that the client has seen uid's state at modseq.
func (v *selected) noteModSeq(uid uint32, modseq uint64) {
	if modseq > v.known(uid) {
		v.seen[uid] = modseq
	}
}

// addPending holds back the expunge of uid, which happened after
// modseq floor.
func (v *selected) addPending(uid uint32, floor uint64) {
	if len(v.pending) == 0 || floor < v.pendingFloor {
		v.pendingFloor = floor
	}
	v.pending[uid] = true
}

func (v *selected) maxUID() uint32 {
	if len(v.uids) == 0 {
		return 0
	}
	return v.uids[len(v.uids)-1]
}

var systemFlagList = []string{`\Answered`, `\Flagged`, `\Deleted`, `\Seen`, `\Draft`}

func (s *session) cmdSelect(cmd *imap.Command) reply {
	args := cmd.Args.(*imap.SelectArgs)
	if s.sel != nil {
		s.sel = nil
		s.state = stateAuth
		if s.qresync {
			// RFC 7162 §3.2.11: the previous mailbox is closed.
			s.w.Raw("* OK [CLOSED] Previous mailbox closed").CRLF()
		}
	}
	if args.QResync != nil && !s.qresync {
		return bad("QRESYNC not enabled")
	}
	mark := s.srv.cfg.Store.Mark()
	mb, err := s.srv.cfg.Store.MailboxByName(s.ctx, s.acct.ID, args.Mailbox)
	if err != nil {
		return s.storeError(err, cmd.Name)
	}
	// Drain a pending wake-up: everything up to now is read below.
	select {
	case <-s.watcher.C:
	default:
	}
	uids, err := s.srv.cfg.Store.MessageUIDs(s.ctx, mb.ID)
	if err != nil {
		return s.storeError(err, cmd.Name)
	}
	// Every message read now has a modseq at most the mailbox's; later
	// changes come above it, which is all the view needs to know.
	v := &selected{mb: mb, readOnly: cmd.Name == "EXAMINE", uids: uids, seen: map[uint32]uint64{}, base: mb.HighestModSeq,
		highest: mb.HighestModSeq, pending: map[uint32]bool{}, condstore: s.condstore || args.CondStore, mark: mark}
	if args.CondStore {
		s.condstore = true
	}
	s.w.Raw("* FLAGS ").Flags(systemFlagList).CRLF()
	s.w.Raw(`* OK [PERMANENTFLAGS (\Answered \Flagged \Deleted \Seen \Draft \*)] Flags permitted`).CRLF()
	s.w.Raw("* ").Number(uint64(len(uids))).Raw(" EXISTS").CRLF()
	if !s.rev2 {
		s.w.Raw("* 0 RECENT").CRLF()
		first, err := s.srv.cfg.Store.FirstUnseenUID(s.ctx, mb.ID)
		if err != nil {
			return s.storeError(err, cmd.Name)
		}
		if first != 0 {
			if i := v.seqOf(first); i >= 0 {
				s.w.Raw("* OK [UNSEEN ").Number(uint64(i + 1)).Raw("] First unseen").CRLF()
			}
		}
	}
	s.w.Raw("* OK [UIDVALIDITY ").Number(uint64(mb.UIDValidity)).Raw("] UIDs valid").CRLF()
	s.w.Raw("* OK [UIDNEXT ").Number(uint64(mb.UIDNext)).Raw("] Predicted next UID").CRLF()
	s.w.Raw("* OK [HIGHESTMODSEQ ").Number(max(v.highest, 1)).Raw("] Highest").CRLF()
	if s.rev2 {
		s.w.Raw(`* LIST () "/" `).Mailbox(mb.Name).CRLF()
	}
	s.sel = v
	s.state = stateSelected
	if args.QResync != nil && args.QResync.UIDValidity == mb.UIDValidity {
		s.qresyncSelect(args.QResync)
	}
	if v.readOnly {
		return okCode("READ-ONLY", cmd.Name+" completed")
	}
	return okCode("READ-WRITE", cmd.Name+" completed")
}

// qresyncSelect sends what changed since the client's modseq (RFC 7162
// §3.2.5.2): VANISHED (EARLIER) and FETCH of changed messages.
func (s *session) qresyncSelect(q *imap.QResyncParams) {
	v := s.sel
	changed, vanished, err := s.srv.cfg.Store.ChangesSince(s.ctx, v.mb.ID, q.ModSeq)
	if err != nil {
		s.log.Error("qresync", "err", err)
		return
	}
	if len(q.KnownUIDs.Ranges) > 0 {
		vanished = filterUIDs(vanished, q.KnownUIDs, 0xffffffff)
	}
	if len(vanished) > 0 {
		s.w.Raw("* VANISHED (EARLIER) ").Raw(imap.CompactUIDs(vanished)).CRLF()
	}
	for _, info := range changed {
		if i := v.seqOf(info.UID); i >= 0 {
			s.writeFlagsFetch(i, info)
		}
	}
}

func filterUIDs(uids []uint32, set imap.SeqSet, max uint32) []uint32 {
	var out []uint32
	for _, u := range uids {
		if set.Contains(u, max) {
			out = append(out, u)
		}
	}
	return out
}

// writeFlagsFetch announces a flag change (RFC 9051 §7.5.2).
func (s *session) writeFlagsFetch(i int, info store.MessageInfo) {
	v := s.sel
	s.w.Raw("* ").Number(uint64(i + 1)).Raw(" FETCH (UID ").Number(uint64(info.UID)).Raw(" FLAGS ").Flags(info.Flags)
	if v.condstore {
		s.w.Raw(" MODSEQ (").Number(info.ModSeq).Raw(")")
	}
	s.w.Raw(")").CRLF()
	v.noteModSeq(info.UID, info.ModSeq)
}

// syncInterval spaces change reads for a client sending commands
// back to back: a change signal (often the session's own write) is read
// at the first command boundary this long after the last read, and at
// once on NOOP, CHECK and IDLE. RFC 9051 §7 lets the server choose when
// to send untagged updates.
const syncInterval = 100 * time.Millisecond

// sync brings the session's view up to date and writes the untagged
// responses: new messages (EXISTS), flag changes (FETCH) and, when
// allowed, expunges (EXPUNGE or VANISHED).
func (s *session) sync(allowExpunge, force bool) {
	v := s.sel
	if v == nil {
		return
	}
	select {
	case <-s.watcher.C:
		v.dirty = true
	default:
	}
	if v.dirty && (force || v.mustRead || time.Since(v.lastRead) >= syncInterval) {
		v.dirty, v.mustRead = false, false
		s.readChanges()
	}
	switch {
	case len(v.pending) == 0:
	case allowExpunge:
		s.announceExpunges()
	case s.qresync:
		// RFC 5162 erratum 1810: MODSEQ values sent while expunges are
		// held back are above them, so a client that resynchronised
		// from those would never learn of the expunges: tell it a
		// HIGHESTMODSEQ below them.
		s.w.Raw("* OK [HIGHESTMODSEQ ").Number(max(v.pendingFloor, 1)).Raw("] Expunges pending").CRLF()
	}
}

func (s *session) readChanges() {
	v := s.sel
	v.lastRead = time.Now()
	if s.srv.cfg.Store.Unchanged(v.mb.ID, v.mb.UIDValidity, v.highest, v.mark) {
		return // only this session's own changes, applied already
	}
	v.mark = s.srv.cfg.Store.Mark()
	from := v.highest
	changed, vanished, highest, err := s.srv.cfg.Store.FlagChangesSince(s.ctx, v.mb.ID, from)
	if err != nil {
		s.log.Error("sync", "err", err)
		return
	}
	maxKnown := v.maxUID()
	added := 0
	for _, info := range changed {
		v.highest = max(v.highest, info.ModSeq)
		if info.UID > maxKnown {
			v.uids = append(v.uids, info.UID)
			v.noteModSeq(info.UID, info.ModSeq)
			maxKnown = info.UID
			added++
			continue
		}
		i := v.seqOf(info.UID)
		if i < 0 || info.ModSeq <= v.known(info.UID) || v.pending[info.UID] {
			continue
		}
		s.writeFlagsFetch(i, info)
	}
	for _, uid := range vanished {
		if v.seqOf(uid) >= 0 {
			v.addPending(uid, from)
		}
	}
	// Every change up to the snapshot's HIGHESTMODSEQ is applied now (or
	// held back in pending); without this, expunges, which leave no
	// changed message, would be read again at every sync.
	v.highest = max(v.highest, highest)
	if added > 0 {
		s.w.Raw("* ").Number(uint64(len(v.uids))).Raw(" EXISTS").CRLF()
	}
}

// ownChange notes a write of this session that took modseq: if the view
// was exact just before it (no other change committed in between, since
// modseqs go up by one a write), it is exact at modseq, and the write's
// effects, which the caller applies, need not be read back.
func (v *selected) ownChange(modseq uint64) bool {
	if modseq == 0 || modseq != v.highest+1 {
		return false
	}
	v.highest = modseq
	return true
}

// announceExpunges removes pending UIDs from the view, highest sequence
// number first so that each EXPUNGE number is right when sent.
func (s *session) announceExpunges() {
	v := s.sel
	gone := make([]uint32, 0, len(v.pending))
	for uid := range v.pending {
		gone = append(gone, uid)
	}
	clear(v.pending)
	sort.Slice(gone, func(i, j int) bool { return gone[i] > gone[j] })
	for _, uid := range gone {
		i := v.seqOf(uid)
		if i < 0 {
			continue
		}
		if !s.qresync {
			s.w.Raw("* ").Number(uint64(i + 1)).Raw(" EXPUNGE").CRLF()
		}
		v.uids = append(v.uids[:i], v.uids[i+1:]...)
		delete(v.seen, uid)
	}
	if s.qresync && len(gone) > 0 {
		// RFC 7162 §3.2.10: VANISHED replaces EXPUNGE once QRESYNC is on.
		s.w.Raw("* VANISHED ").Raw(imap.CompactUIDs(gone)).CRLF()
	}
}

func (s *session) cmdClose(cmd *imap.Command) reply {
	v := s.sel
	if cmd.Name == "CLOSE" && !v.readOnly {
		// RFC 9051 §6.4.1: expunge silently.
		if _, err := s.srv.cfg.Store.Expunge(s.ctx, v.mb.ID, nil); err != nil {
			s.log.Error("close expunge", "err", err)
		}
	}
	s.sel = nil
	s.state = stateAuth
	return ok(cmd.Name + " completed")
}

func (s *session) cmdExpunge(cmd *imap.Command) reply {
	v := s.sel
	if v.readOnly {
		return no("READ-ONLY", "Mailbox is read-only")
	}
	var uids []uint32
	if cmd.UID {
		// RFC 4315 §2.1: only \Deleted messages in the set.
		set := cmd.Args.(*imap.SeqArgs).Set
		uids = []uint32{}
		infos, err := s.infosFor(s.resolve(set, true))
		if err != nil {
			return s.storeError(err, "EXPUNGE")
		}
		for _, info := range infos {
			if hasFlag(info.Flags, `\Deleted`) {
				uids = append(uids, info.UID)
			}
		}
		if len(uids) == 0 {
			return ok("EXPUNGE completed")
		}
	}
	removed, modseq, err := s.srv.cfg.Store.ExpungeModSeq(s.ctx, v.mb.ID, uids)
	if err != nil {
		return s.storeError(err, "EXPUNGE")
	}
	for _, uid := range removed {
		v.addPending(uid, v.highest)
	}
	if !v.ownChange(modseq) {
		v.dirty = true
	}
	return ok("EXPUNGE completed")
}

func hasFlag(flags []string, f string) bool {
	for _, x := range flags {
		if x == f {
			return true
		}
	}
	return false
}

// cmdIdle implements RFC 2177 IDLE: updates are pushed as they happen
// until the client sends DONE.
func (s *session) cmdIdle(cmd *imap.Command) reply {
	s.setReadDeadline(s.srv.cfg.IdleMax)
	s.w.Raw("+ idling").CRLF()
	s.sync(true, true)
	if s.flush() != nil {
		return reply{bye: true}
	}
	type lineResult struct {
		line []byte
		err  error
	}
	done := make(chan lineResult, 1)
	go func() {
		line, err := imap.ReadLine(s.br, 1024)
		done <- lineResult{line, err}
	}()
	for {
		select {
		case r := <-done:
			if r.err != nil {
				switch {
				case s.closing.Load():
					s.w.Raw("* BYE server shutting down").CRLF()
				case errors.Is(r.err, os.ErrDeadlineExceeded):
					s.w.Raw("* BYE IDLE for too long; reconnect").CRLF()
				}
				return reply{bye: true}
			}
			if !strings.EqualFold(string(r.line), "DONE") {
				return bad("Expected DONE")
			}
			return ok("IDLE terminated")
		case <-s.watcher.C:
			if s.sel != nil {
				s.sel.dirty = true
				s.sync(true, true)
				if s.flush() != nil {
					return reply{bye: true}
				}
			}
		}
	}
}
