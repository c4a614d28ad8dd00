package imapserver

import (
	"bytes"
	"io"
	"mime"
	"strings"
	"time"

	"github.com/tern-mail/tern/internal/imap"
	"github.com/tern-mail/tern/internal/message"
	"github.com/tern-mail/tern/internal/store"
)

// searchNeeds says what a search program reads beyond the message rows.
type searchNeeds struct {
	parsed, header, body, modseq bool
}

func needsOf(k *imap.SearchKey, n *searchNeeds) {
	switch k.Op {
	case "BCC", "CC", "FROM", "SUBJECT", "TO", "SENTBEFORE", "SENTON", "SENTSINCE":
		n.parsed = true
	case "HEADER":
		n.parsed = true
		if _, ok := envelopeField(&message.Envelope{}, k.Field); !ok {
			n.header = true
		}
	case "BODY", "TEXT":
		n.body, n.parsed = true, true
	case "MODSEQ":
		n.modseq = true
	}
	for _, s := range k.Sub {
		needsOf(s, n)
	}
}

// candidate is one message under evaluation.
type candidate struct {
	seq    uint32
	info   store.MessageInfo
	parsed *message.Parsed
	header []byte // raw header block, when needed
	body   []byte // raw message, when needed
}

// searcher evaluates a program over the selected mailbox.
type searcher struct {
	s     *session
	key   *imap.SearchKey
	needs searchNeeds
	now   time.Time
	words mime.WordDecoder
}

// runSearch calls keep for each matching message, in ascending order
// (SORT and THREAD collect their data there).
func (s *session) runSearch(key *imap.SearchKey, keep func(c *candidate)) error {
	return s.runSearchHeaders(key, false, keep)
}

// runSearchHeaders is runSearch that also loads every message's header
// block when headers is set (THREAD=REFERENCES reads References).
func (s *session) runSearchHeaders(key *imap.SearchKey, headers bool, keep func(c *candidate)) error {
	sr := &searcher{s: s, key: key, now: time.Now()}
	needsOf(key, &sr.needs)
	sr.needs.header = sr.needs.header || headers
	v := s.sel
	all := func(yield func(int) bool) {
		for i := range v.uids {
			if !yield(i) {
				return
			}
		}
	}
	// Envelope criteria alone decode only the envelope, and only of the
	// messages whose stored bytes may hold the strings searched for.
	envOnly := sr.needs.parsed && !sr.needs.header && !sr.needs.body
	var filter func([]byte) bool
	if envOnly && prefilters(key) {
		filter = func(raw []byte) bool { return mayMatch(key, raw) }
	}
	for b := range batches(all) {
		var parsed map[uint32]*message.Parsed
		var err error
		if filter != nil {
			if parsed, b, err = s.prefiltered(b, filter); err != nil {
				return err
			}
			if len(b) == 0 {
				continue
			}
		}
		infos, err := s.batchInfos(b)
		if err != nil {
			return err
		}
		if sr.needs.parsed && filter == nil && len(infos) > 0 {
			uids := make([]uint32, len(infos))
			for i, m := range infos {
				uids[i] = m.UID
			}
			opt := store.ParsedOptions{EnvelopeOnly: envOnly}
			if parsed, err = s.srv.cfg.Store.ParsedSome(s.ctx, v.mb.ID, uids, opt); err != nil {
				return err
			}
		}
		for _, info := range infos {
			i := v.seqOf(info.UID)
			if i < 0 {
				continue
			}
			c := &candidate{seq: uint32(i + 1), info: info, parsed: parsed[info.UID]}
			if sr.needs.header || sr.needs.body {
				sr.load(c)
			}
			if sr.match(key, c) {
				keep(c)
			}
		}
	}
	return nil
}

// load reads the header (and, for BODY/TEXT, the whole message) from the
// blob. A full-text index replaces this scan later.
func (sr *searcher) load(c *candidate) {
	f, err := sr.s.srv.cfg.Store.OpenBlob(c.info.BlobID)
	if err != nil {
		return
	}
	defer f.Close()
	hdrEnd := c.info.Size
	if c.parsed != nil && c.parsed.Structure != nil {
		hdrEnd = min(c.parsed.Structure.BodyStart, c.info.Size)
	}
	if sr.needs.body {
		b, _ := io.ReadAll(io.LimitReader(f, 64<<20))
		c.body = b
		c.header = b[:min(int64(len(b)), hdrEnd)]
		return
	}
	c.header = make([]byte, hdrEnd)
	n, _ := f.ReadAt(c.header, 0)
	c.header = c.header[:n]
}

func containsFold(s, sub string) bool {
	if sub == "" {
		return true
	}
	return strings.Contains(strings.ToLower(s), strings.ToLower(sub))
}

func (sr *searcher) decode(s string) string {
	if d, err := sr.words.DecodeHeader(s); err == nil {
		return d
	}
	return s
}

func (sr *searcher) addrMatch(list []message.Address, sub string) bool {
	for _, a := range list {
		if containsFold(sr.decode(a.Name), sub) || containsFold(a.Mailbox+"@"+a.Host, sub) {
			return true
		}
	}
	return false
}

func dateOnly(t time.Time) time.Time {
	y, m, d := t.Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

func (sr *searcher) sentDate(c *candidate) (time.Time, bool) {
	if c.parsed == nil || c.parsed.Envelope.Date == "" {
		return time.Time{}, false
	}
	// RFC 9051 §6.4.4: the date as written, "disregarding time and
	// timezone"; read as leniently as SORT reads it (RFC 5256 §2.2).
	wall, _, ok := parseDateField(c.parsed.Envelope.Date)
	if !ok {
		return time.Time{}, false
	}
	return dateOnly(wall), true
}

func (sr *searcher) match(k *imap.SearchKey, c *candidate) bool {
	v := sr.s.sel
	flag := func(f string) bool { return hasFlagFold(c.info.Flags, f) }
	env := &message.Envelope{}
	if c.parsed != nil {
		env = &c.parsed.Envelope
	}
	switch k.Op {
	case "AND":
		for _, s := range k.Sub {
			if !sr.match(s, c) {
				return false
			}
		}
		return true
	case "OR":
		return sr.match(k.Sub[0], c) || sr.match(k.Sub[1], c)
	case "NOT":
		return !sr.match(k.Sub[0], c)
	case "ALL", "OLD":
		return true
	case "NEW", "RECENT":
		return false // tern has no \Recent (RFC 9051 removed it)
	case "ANSWERED", "DELETED", "FLAGGED", "SEEN", "DRAFT":
		return flag(`\` + k.Op)
	case "UNANSWERED", "UNDELETED", "UNFLAGGED", "UNSEEN", "UNDRAFT":
		return !flag(`\` + k.Op[2:])
	case "KEYWORD":
		return flag(k.Value)
	case "UNKEYWORD":
		return !flag(k.Value)
	case "SEQ":
		if k.Set.Saved {
			return containsUID(v.saved, c.info.UID)
		}
		return k.Set.Contains(c.seq, uint32(len(v.uids)))
	case "UID":
		if k.Set.Saved {
			return containsUID(v.saved, c.info.UID)
		}
		return k.Set.Contains(c.info.UID, v.maxUID())
	case "LARGER":
		return uint64(c.info.Size) > k.Number
	case "SMALLER":
		return uint64(c.info.Size) < k.Number
	case "MODSEQ":
		return c.info.ModSeq >= k.Number
	case "OLDER":
		return sr.now.Sub(c.info.InternalDate) >= time.Duration(k.Number)*time.Second
	case "YOUNGER":
		return sr.now.Sub(c.info.InternalDate) <= time.Duration(k.Number)*time.Second
	case "BEFORE":
		return dateOnly(c.info.InternalDate).Before(k.Date)
	case "ON":
		return dateOnly(c.info.InternalDate).Equal(k.Date)
	case "SINCE":
		return !dateOnly(c.info.InternalDate).Before(k.Date)
	case "SENTBEFORE", "SENTON", "SENTSINCE":
		d, ok := sr.sentDate(c)
		if !ok {
			return false
		}
		switch k.Op {
		case "SENTBEFORE":
			return d.Before(k.Date)
		case "SENTON":
			return d.Equal(k.Date)
		}
		return !d.Before(k.Date)
	case "SUBJECT":
		return containsFold(sr.decode(env.Subject), k.Value)
	case "FROM":
		return sr.addrMatch(env.From, k.Value)
	case "TO":
		return sr.addrMatch(env.To, k.Value)
	case "CC":
		return sr.addrMatch(env.Cc, k.Value)
	case "BCC":
		return sr.addrMatch(env.Bcc, k.Value)
	case "HEADER":
		if vals, ok := envelopeField(env, k.Field); ok {
			// Fields the envelope holds need no read of the message.
			for _, v := range vals {
				if containsFold(sr.decode(v), k.Value) {
					return true
				}
			}
			return false
		}
		return sr.headerMatch(c.header, k.Field, k.Value)
	case "BODY":
		if c.body == nil {
			return false
		}
		return bytesContainsFold(c.body[len(c.header):], k.Value) || c.parsed != nil && decodedContains(c.body, c.parsed.Structure, k.Value)
	case "TEXT":
		return bytesContainsFold(c.body, k.Value) || c.parsed != nil && decodedContains(c.body, c.parsed.Structure, k.Value)
	}
	return false
}

// envelopeField returns a header field's values from the stored envelope
// when the envelope holds that field (raw strings; addresses formatted as
// "Name <mailbox@host>"), and false for other fields.
func envelopeField(e *message.Envelope, field string) ([]string, bool) {
	one := func(v string) []string {
		if v == "" {
			return nil
		}
		return []string{v}
	}
	addrs := func(list []message.Address) []string {
		var out []string
		for _, a := range list {
			if a.GroupStart || a.GroupEnd {
				continue
			}
			s := a.Mailbox + "@" + a.Host
			if a.Name != "" {
				s = a.Name + " <" + s + ">"
			}
			out = append(out, s)
		}
		return out
	}
	switch strings.ToLower(field) {
	case "subject":
		return one(e.Subject), true
	case "message-id":
		return one(e.MessageID), true
	case "in-reply-to":
		return one(e.InReplyTo), true
	case "date":
		return one(e.Date), true
	case "from":
		return addrs(e.From), true
	case "to":
		return addrs(e.To), true
	case "cc":
		return addrs(e.Cc), true
	case "bcc":
		return addrs(e.Bcc), true
	}
	return nil, false
}

func hasFlagFold(flags []string, f string) bool {
	for _, x := range flags {
		if strings.EqualFold(x, f) {
			return true
		}
	}
	return false
}

func containsUID(list []uint32, uid uint32) bool {
	for _, u := range list {
		if u == uid {
			return true
		}
	}
	return false
}

// maxDecodedSearch bounds the decoded text BODY and TEXT read of one part.
const maxDecodedSearch = 4 << 20

// decodedContains reports whether a text part of the message raw, decoded
// from its transfer encoding and charset, contains sub: BODY and TEXT
// (RFC 9051 §6.4.4) look for what the user reads, which base64, quoted-
// printable or a legacy charset hide from a search of the stored bytes.
// Parts whose stored bytes are their text were searched already.
func decodedContains(raw []byte, p *message.Part, sub string) bool {
	switch {
	case p == nil:
		return false
	case p.Type == "multipart":
		for _, c := range p.Parts {
			if decodedContains(raw, c, sub) {
				return true
			}
		}
		return false
	case isMessagePart(p):
		return decodedContains(raw, p.Message, sub)
	case p.Type != "text" || p.End > int64(len(raw)):
		return false
	}
	enc := strings.ToLower(p.Encoding)
	cs := strings.ToLower(message.ParamValue(p.Params, "charset"))
	if enc != "base64" && enc != "quoted-printable" && (cs == "" || cs == "utf-8" || cs == "us-ascii") {
		return false
	}
	text, err := message.DecodedText(bytes.NewReader(raw), p, maxDecodedSearch)
	return err == nil && containsFold(text, sub)
}

func bytesContainsFold(b []byte, sub string) bool {
	if sub == "" {
		return true
	}
	return bytes.Contains(bytes.ToLower(b), bytes.ToLower([]byte(sub)))
}

// headerMatch: RFC 9051 §6.4.4 HEADER: the field exists and contains the
// string (an empty string matches any message with the field).
func (sr *searcher) headerMatch(hdr []byte, field, value string) bool {
	found := false
	for _, v := range headerValues(hdr, field) {
		found = true
		if containsFold(sr.decode(v), value) {
			return true
		}
	}
	return found && value == ""
}

// headerValues returns the unfolded values of a header field.
func headerValues(hdr []byte, field string) []string {
	var out []string
	lines := bytes.Split(hdr, []byte("\n"))
	for i := 0; i < len(lines); i++ {
		line := bytes.TrimRight(lines[i], "\r")
		if len(line) == 0 {
			break
		}
		c := bytes.IndexByte(line, ':')
		if c <= 0 || line[0] == ' ' || line[0] == '\t' {
			continue
		}
		if !strings.EqualFold(string(bytes.TrimSpace(line[:c])), field) {
			continue
		}
		val := string(bytes.TrimSpace(line[c+1:]))
		for i+1 < len(lines) && len(lines[i+1]) > 0 && (lines[i+1][0] == ' ' || lines[i+1][0] == '\t') {
			i++
			val += " " + string(bytes.TrimSpace(bytes.TrimRight(lines[i], "\r")))
		}
		out = append(out, val)
	}
	return out
}

func (s *session) cmdSearch(cmd *imap.Command) reply {
	args := cmd.Args.(*imap.SearchArgs)
	if r, bad := checkCharset(args.Charset); bad {
		return r
	}
	var nums, uids []uint32
	var maxModSeq uint64
	err := s.runSearch(args.Key, func(c *candidate) {
		uids = append(uids, c.info.UID)
		if cmd.UID {
			nums = append(nums, c.info.UID)
		} else {
			nums = append(nums, c.seq)
		}
		maxModSeq = max(maxModSeq, c.info.ModSeq)
	})
	if err != nil {
		return s.storeError(err, "SEARCH")
	}
	var needs searchNeeds
	needsOf(args.Key, &needs)
	if needs.modseq {
		s.sel.condstore, s.condstore = true, true
	}
	s.writeSearchResult(cmd, args.HasReturn || s.rev2, args.Return, nums, uids, needs.modseq, maxModSeq)
	return ok("SEARCH completed")
}

func checkCharset(cs string) (reply, bool) {
	switch cs {
	case "", "UTF-8", "US-ASCII":
		return reply{}, false
	}
	return no("BADCHARSET (UTF-8 US-ASCII)", "Unsupported charset"), true
}

// writeSearchResult writes SEARCH or RFC 4731 ESEARCH, and saves the
// result for "$" (RFC 5182).
func (s *session) writeSearchResult(cmd *imap.Command, esearch bool, ret []string, nums, uids []uint32, modseq bool, maxModSeq uint64) {
	w := s.w
	if !esearch {
		w.Raw("* SEARCH")
		for _, n := range nums {
			w.SP().Number(uint64(n))
		}
		if modseq && len(nums) > 0 {
			w.Raw(" (MODSEQ ").Number(maxModSeq).Raw(")")
		}
		w.CRLF()
		return
	}
	opts := map[string]bool{}
	for _, o := range ret {
		opts[o] = true
	}
	if len(ret) == 0 {
		opts["ALL"] = true
	}
	if opts["SAVE"] {
		s.sel.saved = uids
		if opts["MIN"] || opts["MAX"] {
			var keep []uint32
			if opts["MIN"] && len(uids) > 0 {
				keep = append(keep, uids[0])
			}
			if opts["MAX"] && len(uids) > 1 {
				keep = append(keep, uids[len(uids)-1])
			}
			s.sel.saved = keep
		}
		if len(ret) == 1 {
			return // RFC 5182 §2.1: SAVE alone returns nothing
		}
	}
	w.Raw(`* ESEARCH (TAG "`).Raw(cmd.Tag).Raw(`")`)
	if cmd.UID {
		w.Raw(" UID")
	}
	if len(nums) > 0 {
		if opts["MIN"] {
			w.Raw(" MIN ").Number(uint64(nums[0]))
		}
		if opts["MAX"] {
			w.Raw(" MAX ").Number(uint64(nums[len(nums)-1]))
		}
		if opts["ALL"] {
			w.Raw(" ALL ").Raw(imap.CompactUIDs(nums))
		}
	}
	if opts["COUNT"] {
		w.Raw(" COUNT ").Number(uint64(len(nums)))
	}
	if modseq && len(nums) > 0 {
		w.Raw(" MODSEQ ").Number(maxModSeq)
	}
	w.CRLF()
}
