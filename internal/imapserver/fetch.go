package imapserver

import (
	"iter"
	"sort"
	"strconv"

	"github.com/tern-mail/tern/internal/imap"
	"github.com/tern-mail/tern/internal/message"
	"github.com/tern-mail/tern/internal/store"
)

// batchSize is how many messages one store round trip reads: memory stays
// flat whatever the size of the mailbox.
const batchSize = 512

// resolve lists the view indices (0-based, ascending, no duplicates) that a
// sequence set addresses, by sequence number or by UID.
func (s *session) resolve(set imap.SeqSet, uid bool) iter.Seq[int] {
	v := s.sel
	return func(yield func(int) bool) {
		if set.Saved {
			for _, u := range v.saved {
				if i := v.seqOf(u); i >= 0 && !yield(i) {
					return
				}
			}
			return
		}
		type span struct{ a, b int } // index range, inclusive
		var spans []span
		n := len(v.uids)
		if n == 0 {
			return
		}
		for _, r := range set.Ranges {
			if uid {
				lo, hi := normRange(r, v.maxUID())
				a := sort.Search(n, func(i int) bool { return v.uids[i] >= lo })
				b := sort.Search(n, func(i int) bool { return v.uids[i] > hi }) - 1
				if a <= b {
					spans = append(spans, span{a, b})
				}
				continue
			}
			lo, hi := normRange(r, uint32(n))
			if lo > uint32(n) {
				continue
			}
			spans = append(spans, span{int(lo) - 1, int(min(hi, uint32(n))) - 1})
		}
		sort.Slice(spans, func(i, j int) bool { return spans[i].a < spans[j].a })
		next := 0
		for _, sp := range spans {
			for i := max(sp.a, next); i <= sp.b; i++ {
				if !yield(i) {
					return
				}
			}
			next = max(next, sp.b+1)
		}
	}
}

// badSeqSet is the tagged BAD for a message sequence number past the
// client's view (RFC 9051 §9: such a number is invalid); false when the
// set is fine. UIDs and "*" are never out of range.
func (s *session) badSeqSet(set imap.SeqSet, uid bool) (reply, bool) {
	if uid || set.Saved {
		return reply{}, false
	}
	n := uint32(len(s.sel.uids))
	for _, r := range set.Ranges {
		if r.Start != imap.Star && r.Start > n || r.Stop != imap.Star && r.Stop > n {
			return bad("Invalid message sequence number: the mailbox has " + strconv.Itoa(int(n)) + " messages"), true
		}
	}
	return reply{}, false
}

func normRange(r imap.SeqRange, star uint32) (uint32, uint32) {
	a, b := r.Start, r.Stop
	if a == imap.Star {
		a = star
	}
	if b == imap.Star {
		b = star
	}
	if a > b {
		a, b = b, a
	}
	return a, b
}

// batches groups indices for batched store reads.
func batches(seq iter.Seq[int]) iter.Seq[[]int] {
	return func(yield func([]int) bool) {
		var b []int
		for i := range seq {
			b = append(b, i)
			if len(b) == batchSize {
				if !yield(b) {
					return
				}
				b = nil
			}
		}
		if len(b) > 0 {
			yield(b)
		}
	}
}

// infosFor reads the store rows of the given view indices (ascending);
// messages expunged meanwhile are missing from the result.
func (s *session) infosFor(seq iter.Seq[int]) ([]store.MessageInfo, error) {
	var out []store.MessageInfo
	for b := range batches(seq) {
		infos, err := s.batchInfos(b)
		if err != nil {
			return nil, err
		}
		out = append(out, infos...)
	}
	return out, nil
}

func (s *session) batchInfos(idx []int) ([]store.MessageInfo, error) {
	return s.batchRows(idx, nil)
}

// batchRows is batchInfos; with flagsBuf it reads UID, ModSeq and Flags
// alone into *flagsBuf, reused by the command's next batch (FETCH of
// FLAGS, UID, MODSEQ).
func (s *session) batchRows(idx []int, flagsBuf *[]store.MessageInfo) ([]store.MessageInfo, error) {
	v := s.sel
	lo, hi := v.uids[idx[0]], v.uids[idx[len(idx)-1]]
	var all []store.MessageInfo
	var err error
	if flagsBuf != nil {
		all, err = s.srv.cfg.Store.MessageFlags(s.ctx, v.mb.ID, lo, hi, (*flagsBuf)[:0])
		*flagsBuf = all
	} else {
		all, err = s.srv.cfg.Store.Messages(s.ctx, v.mb.ID, lo, hi)
	}
	if err != nil {
		return nil, err
	}
	if len(all) == len(idx) {
		return all, nil
	}
	// Both lists ascend: keep the rows whose UID the batch names.
	out := all[:0]
	k := 0
	for _, m := range all {
		for k < len(idx) && v.uids[idx[k]] < m.UID {
			k++
		}
		if k < len(idx) && v.uids[idx[k]] == m.UID {
			out = append(out, m)
		}
	}
	return out, nil
}

// parsedNeed is how much of the stored structure a FETCH decodes.
type parsedNeed int

const (
	parsedNone parsedNeed = iota
	parsedEnvelope
	parsedFull
)

// fetchPlan is what a FETCH needs beyond the rows.
type fetchPlan struct {
	items   []imap.FetchItem
	parsed  parsedNeed
	setSeen bool
	// flagsOnly: the items need nothing but UID, FLAGS and MODSEQ,
	// read into rows batch after batch.
	flagsOnly bool
	rows      []store.MessageInfo
	hasFlags  bool
	modseq    bool
	uid       bool
}

func (s *session) planFetch(cmd *imap.Command, args *imap.FetchArgs) fetchPlan {
	p := fetchPlan{uid: cmd.UID, modseq: args.ChangedSince > 0, flagsOnly: true}
	for _, it := range args.Items {
		if it.Name != "FLAGS" && it.Name != "UID" && it.Name != "MODSEQ" {
			p.flagsOnly = false
		}
		switch it.Name {
		case "ENVELOPE":
			p.parsed = max(p.parsed, parsedEnvelope)
		case "BODYSTRUCTURE", "RFC822.HEADER", "RFC822.TEXT", "BINARY", "BINARY.SIZE", "PREVIEW", "BODY":
			p.parsed = parsedFull
		case "FLAGS":
			p.hasFlags = true
		case "UID":
			p.uid = true
			continue
		case "MODSEQ":
			p.modseq = true
			continue
		}
		switch {
		case it.Name == "RFC822" || it.Name == "RFC822.TEXT",
			(it.Name == "BODY" || it.Name == "BINARY") && it.Section != nil && !it.Peek:
			p.setSeen = !s.sel.readOnly
		}
		p.items = append(p.items, it)
	}
	if p.modseq && !s.sel.condstore {
		// RFC 7162 §3.1: a CONDSTORE-aware command enables CONDSTORE.
		s.sel.condstore, s.condstore = true, true
	}
	return p
}

func (s *session) cmdFetch(cmd *imap.Command) reply {
	args := cmd.Args.(*imap.FetchArgs)
	if args.Vanished && (!cmd.UID || !s.qresync || args.ChangedSince == 0) {
		return bad("VANISHED needs UID FETCH, QRESYNC and CHANGEDSINCE")
	}
	if r, isBad := s.badSeqSet(args.Set, cmd.UID); isBad {
		return r
	}
	plan := s.planFetch(cmd, args)
	s.unknownCTE = false
	if args.Vanished {
		s.fetchVanished(args)
	}
	for b := range batches(s.resolve(args.Set, cmd.UID)) {
		if err := s.fetchBatch(b, &plan, args.ChangedSince); err != nil {
			return s.storeError(err, "FETCH")
		}
	}
	if s.unknownCTE {
		return no("UNKNOWN-CTE", "a part's Content-Transfer-Encoding is unknown: fetch it with BODY[]")
	}
	return ok("FETCH completed")
}

// fetchVanished: RFC 7162 §3.2.6: UID FETCH ... (CHANGEDSINCE m VANISHED).
func (s *session) fetchVanished(args *imap.FetchArgs) {
	v := s.sel
	_, vanished, err := s.srv.cfg.Store.ChangesSince(s.ctx, v.mb.ID, args.ChangedSince)
	if err != nil {
		return
	}
	vanished = filterUIDs(vanished, args.Set, 0xffffffff)
	if len(vanished) > 0 {
		s.w.Raw("* VANISHED (EARLIER) ").Raw(imap.CompactUIDs(vanished)).CRLF()
	}
}

func (s *session) fetchBatch(idx []int, plan *fetchPlan, changedSince uint64) error {
	v := s.sel
	var buf *[]store.MessageInfo
	if plan.flagsOnly {
		buf = &plan.rows
	}
	infos, err := s.batchRows(idx, buf)
	if err != nil {
		return err
	}
	var parsed map[uint32]*message.Parsed
	if plan.parsed != parsedNone && len(infos) > 0 {
		uids := make([]uint32, len(infos))
		for i, m := range infos {
			uids[i] = m.UID
		}
		opt := store.ParsedOptions{EnvelopeOnly: plan.parsed == parsedEnvelope}
		if parsed, err = s.srv.cfg.Store.ParsedSome(s.ctx, v.mb.ID, uids, opt); err != nil {
			return err
		}
	}
	var seenNow map[uint32]bool
	if plan.setSeen {
		seenNow = map[uint32]bool{}
		if err := s.markSeen(infos, seenNow); err != nil {
			return err
		}
	}
	k := 0 // infos and idx both ascend: walk them together
	for _, info := range infos {
		for k < len(idx) && v.uids[idx[k]] < info.UID {
			k++
		}
		if k == len(idx) || v.uids[idx[k]] != info.UID {
			continue
		}
		if changedSince > 0 && info.ModSeq <= changedSince {
			continue
		}
		var p *message.Parsed
		if parsed != nil {
			p = parsed[info.UID]
		}
		s.writeFetch(idx[k], info, p, plan, seenNow[info.UID])
		if plan.hasFlags || seenNow[info.UID] {
			v.noteModSeq(info.UID, info.ModSeq)
		}
	}
	return nil
}

// markSeen sets \Seen on messages a non-PEEK body fetch reads (RFC 9051
// §6.4.5) and updates infos in place.
func (s *session) markSeen(infos []store.MessageInfo, seenNow map[uint32]bool) error {
	var uids []uint32
	for _, m := range infos {
		if !hasFlag(m.Flags, `\Seen`) {
			uids = append(uids, m.UID)
		}
	}
	if len(uids) == 0 {
		return nil
	}
	res, err := s.srv.cfg.Store.SetFlags(s.ctx, s.sel.mb.ID, store.FlagUpdate{UIDs: uids, Op: store.FlagsAdd, Flags: []string{`\Seen`}})
	if err != nil {
		return err
	}
	changed := res.Updated
	s.sel.ownChange(res.ModSeq)
	byUID := map[uint32]store.MessageInfo{}
	for _, c := range changed {
		byUID[c.UID] = c
	}
	for k := range infos {
		if c, ok := byUID[infos[k].UID]; ok {
			infos[k].Flags, infos[k].ModSeq = c.Flags, c.ModSeq
			seenNow[c.UID] = true
		}
	}
	return nil
}

func (s *session) writeFetch(i int, info store.MessageInfo, p *message.Parsed, plan *fetchPlan, seenNow bool) {
	w := s.w
	w.Raw("* ").Number(uint64(i + 1)).Raw(" FETCH (")
	first := true
	sep := func() {
		if !first {
			w.SP()
		}
		first = false
	}
	if plan.uid {
		sep()
		w.Raw("UID ").Number(uint64(info.UID))
	}
	if seenNow && !plan.hasFlags {
		sep()
		w.Raw("FLAGS ").Flags(info.Flags)
	}
	if plan.modseq || (s.sel.condstore && seenNow) {
		sep()
		w.Raw("MODSEQ (").Number(info.ModSeq).Raw(")")
	}
	for _, it := range plan.items {
		sep()
		s.writeItem(it, info, p)
	}
	w.Raw(")").CRLF()
}

func (s *session) writeItem(it imap.FetchItem, info store.MessageInfo, p *message.Parsed) {
	w := s.w
	switch it.Name {
	case "FLAGS":
		w.Raw("FLAGS ").Flags(info.Flags)
	case "INTERNALDATE":
		w.Raw(`INTERNALDATE "`).Raw(imap.FormatDateTime(info.InternalDate)).Raw(`"`)
	case "RFC822.SIZE":
		w.Raw("RFC822.SIZE ").Number(uint64(info.Size))
	case "SAVEDATE":
		w.Raw("SAVEDATE NIL")
	case "ENVELOPE":
		w.Raw("ENVELOPE ")
		if p == nil {
			w.Raw("(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)")
		} else {
			s.writeEnvelope(&p.Envelope)
		}
	case "BODYSTRUCTURE", "BODY":
		if it.Section != nil {
			s.writeSection(it, info, p)
			return
		}
		w.Raw(it.Name).SP()
		if p == nil || p.Structure == nil {
			w.Raw(`("text" "plain" NIL NIL NIL "7bit" 0 0)`)
		} else {
			s.writeBodyStructure(p.Structure, it.Name == "BODYSTRUCTURE")
		}
	case "PREVIEW":
		w.Raw("PREVIEW ")
		if p == nil {
			w.Raw("NIL")
		} else {
			w.String(p.Preview)
		}
	case "RFC822", "RFC822.HEADER", "RFC822.TEXT", "BINARY", "BINARY.SIZE":
		s.writeSection(it, info, p)
	}
}
