package imapserver

import (
	"bytes"
	"errors"
	"strings"
	"time"

	"github.com/tern-mail/tern/internal/imap"
	"github.com/tern-mail/tern/internal/store"
)

// checkFlags rejects flags a client may not store (RFC 9051 §2.3.2).
func checkFlags(flags []string) (string, bool) {
	for _, f := range flags {
		if !strings.HasPrefix(f, `\`) {
			continue
		}
		switch strings.ToLower(f) {
		case `\seen`, `\answered`, `\flagged`, `\deleted`, `\draft`:
		default:
			return f, false
		}
	}
	return "", true
}

func (s *session) cmdStore(cmd *imap.Command) reply {
	v := s.sel
	args := cmd.Args.(*imap.StoreArgs)
	if r, isBad := s.badSeqSet(args.Set, cmd.UID); isBad {
		return r
	}
	if v.readOnly {
		return no("READ-ONLY", "Mailbox is read-only")
	}
	if f, okFlags := checkFlags(args.Flags); !okFlags {
		return bad("Cannot store flag " + f)
	}
	if args.HasUnchangedSince && !v.condstore {
		v.condstore, s.condstore = true, true
	}
	var uids []uint32
	for i := range s.resolve(args.Set, cmd.UID) {
		uids = append(uids, v.uids[i])
	}
	if len(uids) == 0 {
		return ok("STORE completed")
	}
	op := store.FlagsReplace
	switch args.Op {
	case imap.StoreAdd:
		op = store.FlagsAdd
	case imap.StoreRemove:
		op = store.FlagsRemove
	}
	upd := store.FlagUpdate{UIDs: uids, Op: op, Flags: args.Flags}
	if args.HasUnchangedSince {
		if args.UnchangedSince == 0 {
			// RFC 7162 §3.1.3: every modseq is above 0, so nothing is stored.
			return s.modifiedReply(cmd, uids)
		}
		upd.UnchangedSince = args.UnchangedSince
	}
	res, err := s.srv.cfg.Store.SetFlags(s.ctx, v.mb.ID, upd)
	if err != nil {
		return s.storeError(err, "STORE")
	}
	changed, failed := res.Updated, res.Failed
	v.ownChange(res.ModSeq)
	for _, info := range changed {
		i := v.seqOf(info.UID)
		if i < 0 {
			continue
		}
		if args.Silent && !v.condstore {
			v.noteModSeq(info.UID, info.ModSeq)
			continue
		}
		s.w.Raw("* ").Number(uint64(i + 1)).Raw(" FETCH (")
		if cmd.UID {
			s.w.Raw("UID ").Number(uint64(info.UID)).SP()
		}
		s.w.Raw("FLAGS ").Flags(info.Flags)
		if v.condstore {
			s.w.Raw(" MODSEQ (").Number(info.ModSeq).Raw(")")
		}
		s.w.Raw(")").CRLF()
		v.noteModSeq(info.UID, info.ModSeq)
	}
	if len(failed) > 0 {
		return s.modifiedReply(cmd, failed)
	}
	return ok("STORE completed")
}

// modifiedReply: RFC 7162 §3.1.3: MODIFIED lists what was not stored.
func (s *session) modifiedReply(cmd *imap.Command, failed []uint32) reply {
	var nums []uint32
	for _, uid := range failed {
		if cmd.UID {
			nums = append(nums, uid)
		} else if i := s.sel.seqOf(uid); i >= 0 {
			nums = append(nums, uint32(i+1))
		}
	}
	return okCode("MODIFIED "+imap.CompactUIDs(nums), "Conditional STORE failed")
}

func (s *session) cmdCopy(cmd *imap.Command) reply {
	v := s.sel
	args := cmd.Args.(*imap.CopyArgs)
	move := cmd.Name == "MOVE"
	if r, isBad := s.badSeqSet(args.Set, cmd.UID); isBad {
		return r
	}
	if move && v.readOnly {
		return no("READ-ONLY", "Mailbox is read-only")
	}
	dst, err := s.srv.cfg.Store.MailboxByName(s.ctx, s.acct.ID, args.Mailbox)
	if errors.Is(err, store.ErrNotFound) {
		return no("TRYCREATE", "No such mailbox")
	} else if err != nil {
		return s.storeError(err, cmd.Name)
	}
	var uids []uint32
	for i := range s.resolve(args.Set, cmd.UID) {
		uids = append(uids, v.uids[i])
	}
	if len(uids) == 0 {
		if cmd.UID {
			return ok(cmd.Name + " completed")
		}
		return no("", "No messages")
	}
	var uv uint32
	var pairs []store.UIDPair
	if move {
		uv, pairs, err = s.srv.cfg.Store.Move(s.ctx, v.mb.ID, dst.ID, uids)
	} else {
		uv, pairs, err = s.srv.cfg.Store.Copy(s.ctx, v.mb.ID, dst.ID, uids)
	}
	if err != nil {
		return s.storeError(err, cmd.Name)
	}
	if len(pairs) == 0 {
		return ok(cmd.Name + " completed")
	}
	src := make([]uint32, len(pairs))
	dstUIDs := make([]uint32, len(pairs))
	for i, p := range pairs {
		src[i], dstUIDs[i] = p.Src, p.Dst
	}
	if dst.ID == v.mb.ID {
		v.dirty, v.mustRead = true, true // the copies are new messages here
	}
	code := "COPYUID " + itoa(uint64(uv)) + " " + imap.Ordered(src) + " " + imap.Ordered(dstUIDs)
	if !move {
		return okCode(code, "COPY completed")
	}
	// RFC 6851 §4.3: COPYUID in an untagged OK, then the expunges.
	s.w.Raw("* OK [").Raw(code).Raw("] Moved").CRLF()
	for _, u := range src {
		v.addPending(u, v.highest)
	}
	v.dirty = true
	return ok("MOVE completed")
}

func (s *session) cmdAppend(cmd *imap.Command) reply {
	args := cmd.Args.(*imap.AppendArgs)
	mb, err := s.srv.cfg.Store.MailboxByName(s.ctx, s.acct.ID, args.Mailbox)
	if errors.Is(err, store.ErrNotFound) {
		return no("TRYCREATE", "No such mailbox")
	} else if err != nil {
		return s.storeError(err, "APPEND")
	}
	for _, m := range args.Messages {
		if int64(len(m.Data)) > s.srv.cfg.AppendLimit {
			return no("TOOBIG", "Message too big")
		}
		if f, okFlags := checkFlags(m.Flags); !okFlags {
			return bad("Cannot store flag " + f)
		}
	}
	bodies := make([][]byte, len(args.Messages))
	for i := range args.Messages {
		bodies[i] = appendBody(&args.Messages[i])
	}
	// RFC 9208 §4.3: messages that cannot all fit are refused with NO
	// [OVERQUOTA] and nothing stored; the store checks the quota in the
	// write itself, against the usage of that moment (a check before it
	// would read the account once more for every APPEND, and still not
	// be the last word).
	reqs := make([]store.AppendRequest, len(args.Messages))
	for i, m := range args.Messages {
		date := m.Date
		if !m.HasDate {
			date = time.Now()
		}
		reqs[i] = store.AppendRequest{
			AccountID: s.acct.ID, MailboxID: mb.ID, Body: bytes.NewReader(bodies[i]),
			Flags: m.Flags, InternalDate: date,
		}
	}
	// RFC 3502 §6.3.11: MULTIAPPEND is all or nothing.
	done, err := s.srv.cfg.Store.AppendAll(s.ctx, reqs)
	if err != nil {
		return s.storeError(err, "APPEND")
	}
	uids := make([]uint32, len(done))
	for i, d := range done {
		uids[i] = d.UID
	}
	uv := done[0].UIDValidity
	if v := s.sel; v != nil && v.mb.ID == mb.ID {
		// RFC 9051 §6.3.12: EXISTS for the new message now, from what
		// the write returned when nothing else changed the mailbox in
		// between, else read.
		if v.ownAppend(done) {
			s.w.Raw("* ").Number(uint64(len(v.uids))).Raw(" EXISTS").CRLF()
		} else {
			v.dirty, v.mustRead = true, true
		}
	}
	// RFC 4315 §3: APPENDUID.
	return okCode("APPENDUID "+itoa(uint64(uv))+" "+imap.Ordered(uids), "APPEND completed")
}

// ownAppend adds messages this session appended to the view, when their
// modseqs follow the view's without a gap (see ownChange) and their UIDs
// come after its last.
func (v *selected) ownAppend(done []store.Delivered) bool {
	next, last := v.highest+1, v.maxUID()
	for _, d := range done {
		if d.ModSeq != next || d.UID <= last {
			return false
		}
		next, last = next+1, d.UID
	}
	for _, d := range done {
		v.ownChange(d.ModSeq)
		v.uids = append(v.uids, d.UID)
		v.noteModSeq(d.UID, d.ModSeq)
	}
	return true
}

func itoa(n uint64) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			break
		}
	}
	return string(b[i:])
}
