package imapserver

import (
	"fmt"
	"io"
	"mime"
	"sort"
	"strings"
	"time"

	"golang.org/x/text/encoding/htmlindex"
	"golang.org/x/text/encoding/ianaindex"

	"github.com/tern-mail/tern/internal/imap"
	"github.com/tern-mail/tern/internal/message"
)

// sortItem is one message with the keys RFC 5256 sorts and threads on.
type sortItem struct {
	seq, uid  uint32
	arrival   time.Time
	date      time.Time // sent date (RFC 5256 §2.2)
	size      int64
	subject   string // base subject (RFC 5256 §2.1)
	replyFwd  bool   // the subject marks a reply or forward
	from, to  string
	cc        string
	dispFrom  string
	dispTo    string
	messageID string   // without angle brackets; "" if none is valid
	refs      []string // the references, oldest first (RFC 5256 §3 step 1)
}

// decodeWords decodes RFC 2047 encoded words, in any charset the WHATWG
// or IANA registries name.
func decodeWords(s string) string {
	if !strings.Contains(s, "=?") {
		return s
	}
	wd := mime.WordDecoder{CharsetReader: charsetReader}
	if d, err := wd.DecodeHeader(s); err == nil {
		return d
	}
	return s
}

func charsetReader(name string, r io.Reader) (io.Reader, error) {
	enc, err := htmlindex.Get(name)
	if err != nil {
		if enc, err = ianaindex.MIME.Encoding(name); err != nil || enc == nil {
			return nil, fmt.Errorf("unknown charset %q", name)
		}
	}
	return enc.NewDecoder().Reader(r), nil
}

// parseSentDate parses a Date: field for RFC 5256 §2.2 into the instant
// it names (see parseDateField).
func parseSentDate(s string) (time.Time, bool) {
	wall, offset, ok := parseDateField(s)
	if !ok {
		return time.Time{}, false
	}
	return wall.Add(-time.Duration(offset) * time.Minute), true
}

// parseDateField parses an RFC 5322 §3.3 date-time with the obsolete
// forms of §4.3 (two-digit years, zone names), as leniently as Dovecot:
// an unknown or missing zone is +0000, "." may separate the parts of the
// time, comments and white space go anywhere. A four-digit year before
// 1900 is invalid. It returns the date and time as written (as a UTC
// time) and the zone's offset in minutes.
func parseDateField(s string) (wall time.Time, offset int, ok bool) {
	p := dateParser{s: s}
	tok := p.token()
	if len(tok) == 3 && !isDigits(tok) { // day-of-week ","
		if !p.sep(",") {
			return time.Time{}, 0, false
		}
		tok = p.token()
	}
	day, ok := number(tok, 1, 2)
	if !ok {
		return time.Time{}, 0, false
	}
	month := 0
	if tok = p.token(); len(tok) >= 3 {
		const months = "JANFEBMARAPRMAYJUNJULAUGSEPOCTNOVDEC"
		if i := strings.Index(months, strings.ToUpper(tok[:3])); i >= 0 && i%3 == 0 {
			month = i/3 + 1
		}
	}
	tok = p.token()
	year, ok := number(tok, 2, 4)
	switch {
	case !ok || month == 0 || len(tok) == 3:
		return time.Time{}, 0, false
	case len(tok) == 2 && year < 50: // RFC 5322 §4.3
		year += 2000
	case len(tok) == 2:
		year += 1900
	case year < 1900:
		return time.Time{}, 0, false
	}
	hour, ok := number(p.token(), 1, 2)
	if !ok || !p.sep(":.") {
		return time.Time{}, 0, false
	}
	minute, ok := number(p.token(), 2, 2)
	if !ok {
		return time.Time{}, 0, false
	}
	sec := 0
	if p.sep(":.") {
		if sec, ok = number(p.token(), 2, 2); !ok {
			return time.Time{}, 0, false
		}
		// A leap second (RFC 5322 §3.3 allows 60) stays in its minute
		// rather than carrying into the next day.
		sec = min(sec, 59)
	}
	return time.Date(year, time.Month(month), day, hour, minute, sec, 0, time.UTC), zoneOffset(p.token()), true
}

// zoneOffset is the offset in minutes of a zone (RFC 5322 §3.3, §4.3);
// 0 for unknown ones and military letters (§4.3: their meaning is lost).
func zoneOffset(z string) int {
	if len(z) == 5 && (z[0] == '+' || z[0] == '-') && isDigits(z[1:]) {
		off := int(z[1]-'0')*600 + int(z[2]-'0')*60 + int(z[3]-'0')*10 + int(z[4]-'0')
		if z[0] == '-' {
			return -off
		}
		return off
	}
	switch strings.ToUpper(z) {
	case "EDT":
		return -4 * 60
	case "EST", "CDT":
		return -5 * 60
	case "CST", "MDT":
		return -6 * 60
	case "MST", "PDT":
		return -7 * 60
	case "PST":
		return -8 * 60
	}
	return 0
}

// dateParser splits a date-time into atoms, skipping CFWS.
type dateParser struct{ s string }

func (p *dateParser) skipCFWS() {
	depth := 0
	for len(p.s) > 0 {
		switch c := p.s[0]; {
		case c == '(':
			depth++
		case c == ')' && depth > 0:
			depth--
		case c == '\\' && depth > 0 && len(p.s) > 1:
			p.s = p.s[1:]
		case depth == 0 && c != ' ' && c != '\t' && c != '\r' && c != '\n':
			return
		}
		p.s = p.s[1:]
	}
}

// token returns the next atom (RFC 5322 §3.2.3 atext), "" if there is none.
func (p *dateParser) token() string {
	p.skipCFWS()
	i := 0
	for i < len(p.s) && isAtext(p.s[i]) {
		i++
	}
	tok := p.s[:i]
	p.s = p.s[i:]
	p.skipCFWS()
	return tok
}

// sep consumes one of the separator characters in set.
func (p *dateParser) sep(set string) bool {
	if len(p.s) == 0 || strings.IndexByte(set, p.s[0]) < 0 {
		return false
	}
	p.s = p.s[1:]
	p.skipCFWS()
	return true
}

func isAtext(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c >= 0x80 || strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// number parses s, of minLen to maxLen digits.
func number(s string, minLen, maxLen int) (int, bool) {
	if len(s) < minLen || len(s) > maxLen || !isDigits(s) {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		n = n*10 + int(s[i]-'0')
	}
	return n, true
}

// baseSubject is the base subject of RFC 5256 §2.1.
func baseSubject(s string) string {
	b, _ := baseSubjectRF(s)
	return b
}

// baseSubjectRF extracts the base subject of RFC 5256 §2.1 and reports
// whether the subject marks a reply or forward: step 2 removed "(fwd)",
// step 3 removed a subj-refwd, or step 6 removed a "[fwd: ...]" wrapper.
// The result is upper-cased: RFC 5256 compares subjects with
// i;unicode-casemap (RFC 5051), whose title case upper case stands in for.
func baseSubjectRF(s string) (string, bool) {
	// (1) Decode encoded words; tabs, continuations and runs of white
	// space become one space. Each run of bytes that is not UTF-8 (raw
	// 8-bit fields) becomes one U+FFFD, as in Dovecot; the stored
	// envelope has one U+FFFD per such byte already, so runs of U+FFFD
	// are squeezed too.
	s = strings.ToValidUTF8(decodeWords(s), "\uFFFD")
	for strings.Contains(s, "\uFFFD\uFFFD") {
		s = strings.ReplaceAll(s, "\uFFFD\uFFFD", "\uFFFD")
	}
	s = strings.ToUpper(strings.Join(strings.Fields(s), " "))
	rf := false
	for {
		// (2) subj-trailer = "(fwd)" / WSP, repeatedly.
		for {
			if t, ok := strings.CutSuffix(s, "(FWD)"); ok {
				s, rf = t, true
			} else if t, ok := strings.CutSuffix(s, " "); ok {
				s = t
			} else {
				break
			}
		}
		// (3), (4), (5): leaders and blobs until none is left.
		for {
			t, refwd := cutLeader(s)
			rf = rf || refwd
			if rest, ok := cutBlob(t); ok && strings.TrimSpace(rest) != "" {
				t = rest
			}
			if t == s {
				break
			}
			s = t
		}
		// (6) "[fwd:" ... "]": unwrap and start again at step 2.
		if len(s) >= 6 && strings.HasPrefix(s, "[FWD:") && strings.HasSuffix(s, "]") {
			s, rf = s[5:len(s)-1], true
			continue
		}
		return s, rf
	}
}

// cutLeader removes one subj-leader (RFC 5256 §5):
//
//	subj-leader = (*subj-blob subj-refwd) / WSP
//	subj-refwd  = ("re" / ("fw" ["d"])) *WSP [subj-blob] ":"
//
// and reports whether it was a subj-refwd.
func cutLeader(s string) (string, bool) {
	if strings.HasPrefix(s, " ") {
		return s[1:], false
	}
	t := s
	for {
		rest, ok := cutBlob(t)
		if !ok {
			break
		}
		t = rest
	}
	switch {
	case strings.HasPrefix(t, "RE"):
		t = t[2:]
	case strings.HasPrefix(t, "FWD"):
		t = t[3:]
	case strings.HasPrefix(t, "FW"):
		t = t[2:]
	default:
		return s, false
	}
	t = strings.TrimLeft(t, " ")
	if rest, ok := cutBlob(t); ok {
		t = rest
	}
	if !strings.HasPrefix(t, ":") {
		return s, false
	}
	return t[1:], true
}

// cutBlob removes one subj-blob = "[" *BLOBCHAR "]" *WSP, where BLOBCHAR
// is any character but "[" and "]".
func cutBlob(s string) (string, bool) {
	if !strings.HasPrefix(s, "[") {
		return s, false
	}
	i := strings.IndexAny(s[1:], "[]")
	if i < 0 || s[1+i] != ']' {
		return s, false
	}
	return strings.TrimLeft(s[i+2:], " "), true
}

// nextMsgID returns the first valid msg-id (RFC 5322 §3.6.4) in s,
// without its angle brackets and white space, and what follows it. An
// id is valid if it has something on both sides of an "@" and no
// brackets inside; comments and white space in it are dropped.
func nextMsgID(s string) (id, rest string, ok bool) {
	for {
		i := strings.IndexByte(s, '<')
		if i < 0 {
			return "", "", false
		}
		s = s[i+1:]
		j := strings.IndexAny(s, "<>")
		if j < 0 {
			return "", "", false
		}
		if s[j] == '<' {
			s = s[j:] // an unclosed "<": start again at the next one
			continue
		}
		if id, ok := cleanMsgID(s[:j]); ok {
			return id, s[j+1:], true
		}
		s = s[j+1:]
	}
}

func cleanMsgID(s string) (string, bool) {
	var b strings.Builder
	depth := 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '(':
			depth++
		case c == ')' && depth > 0:
			depth--
		case depth > 0, c == ' ', c == '\t', c == '\r', c == '\n':
		default:
			b.WriteByte(c)
		}
	}
	id := b.String()
	at := strings.LastIndexByte(id, '@')
	if at <= 0 || at == len(id)-1 {
		return "", false
	}
	return id, true
}

// msgIDs returns every valid msg-id of s, in order.
func msgIDs(s string) []string {
	var out []string
	for {
		id, rest, ok := nextMsgID(s)
		if !ok {
			return out
		}
		out = append(out, id)
		s = rest
	}
}

func firstAddr(list []message.Address) (mailbox, display string) {
	for _, a := range list {
		if a.GroupStart || a.GroupEnd {
			continue
		}
		d := decodeWords(a.Name)
		if d == "" {
			d = a.Mailbox + "@" + a.Host
		}
		return strings.ToLower(a.Mailbox), strings.ToLower(d)
	}
	return "", ""
}

func newSortItem(c *candidate) sortItem {
	it := sortItem{seq: c.seq, uid: c.info.UID, arrival: c.info.InternalDate, size: c.info.Size}
	// RFC 5256 §2.2: the sent date is the Date: field, else INTERNALDATE.
	it.date = it.arrival
	if c.parsed != nil {
		e := &c.parsed.Envelope
		if t, ok := parseSentDate(e.Date); ok {
			it.date = t
		}
		it.subject, it.replyFwd = baseSubjectRF(e.Subject)
		it.from, it.dispFrom = firstAddr(e.From)
		it.to, it.dispTo = firstAddr(e.To)
		it.cc, _ = firstAddr(e.Cc)
		it.messageID, _, _ = nextMsgID(e.MessageID)
		// RFC 5256 §3 step 1: the References field (the first one); if
		// it has no valid msg-id, the first valid one of In-Reply-To.
		if refs := headerValues(c.header, "References"); len(refs) > 0 {
			it.refs = msgIDs(refs[0])
		}
		if len(it.refs) == 0 {
			if id, _, ok := nextMsgID(e.InReplyTo); ok {
				it.refs = []string{id}
			}
		}
	}
	return it
}

func (s *session) collect(key *imap.SearchKey, headers bool) ([]sortItem, error) {
	var items []sortItem
	err := s.runSearchHeaders(withParsed(key), headers, func(c *candidate) { items = append(items, newSortItem(c)) })
	return items, err
}

// withParsed makes sure the search loads envelopes (SORT and THREAD need
// them) by wrapping the program in an AND with a SUBJECT "" test.
func withParsed(k *imap.SearchKey) *imap.SearchKey {
	return &imap.SearchKey{Op: "AND", Sub: []*imap.SearchKey{k, {Op: "SUBJECT"}}}
}

func (s *session) cmdSort(cmd *imap.Command) reply {
	args := cmd.Args.(*imap.SortArgs)
	if r, bad := checkCharset(args.Charset); bad {
		return r
	}
	items, err := s.collect(args.Key, false)
	if err != nil {
		return s.storeError(err, "SORT")
	}
	less := func(a, b *sortItem, key string) int {
		cmpStr := func(x, y string) int { return strings.Compare(x, y) }
		switch key {
		case "ARRIVAL":
			return a.arrival.Compare(b.arrival)
		case "DATE":
			return a.date.Compare(b.date)
		case "SIZE":
			return int(a.size - b.size)
		case "SUBJECT":
			return cmpStr(a.subject, b.subject)
		case "FROM":
			return cmpStr(a.from, b.from)
		case "TO":
			return cmpStr(a.to, b.to)
		case "CC":
			return cmpStr(a.cc, b.cc)
		case "DISPLAYFROM":
			return cmpStr(a.dispFrom, b.dispFrom)
		case "DISPLAYTO":
			return cmpStr(a.dispTo, b.dispTo)
		}
		return 0
	}
	sort.SliceStable(items, func(i, j int) bool {
		for _, c := range args.Criteria {
			r := less(&items[i], &items[j], c.Key)
			if c.Reverse {
				r = -r
			}
			if r != 0 {
				return r < 0
			}
		}
		return items[i].seq < items[j].seq // RFC 5256 §3: ties by sequence
	})
	nums := make([]uint32, len(items))
	for i, it := range items {
		nums[i] = it.seq
		if cmd.UID {
			nums[i] = it.uid
		}
	}
	if args.HasReturn {
		uids := make([]uint32, len(items))
		for i, it := range items {
			uids[i] = it.uid
		}
		s.writeSearchResult(cmd, true, args.Return, nums, uids, false, 0)
		return ok("SORT completed")
	}
	s.w.Raw("* SORT")
	for _, n := range nums {
		s.w.SP().Number(uint64(n))
	}
	s.w.CRLF()
	return ok("SORT completed")
}

// thread is a node of a THREAD answer: a message, or a dummy (item nil)
// standing for a message that is referenced but not present.
type thread struct {
	item     *sortItem
	parent   *thread
	children []*thread
}

func (s *session) cmdThread(cmd *imap.Command) reply {
	args := cmd.Args.(*imap.ThreadArgs)
	if r, bad := checkCharset(args.Charset); bad {
		return r
	}
	items, err := s.collect(args.Key, args.Algorithm == "REFERENCES")
	if err != nil {
		return s.storeError(err, "THREAD")
	}
	var roots []*thread
	if args.Algorithm == "ORDEREDSUBJECT" {
		roots = orderedSubject(items)
	} else {
		roots = references(items)
	}
	s.w.Raw("* THREAD")
	if len(roots) > 0 {
		s.w.SP()
	}
	writeThreads(s.w, roots, cmd.UID)
	s.w.CRLF()
	return ok("THREAD completed")
}

// sentBefore orders messages by sent date, then by sequence number (RFC
// 5256 §2.2, §3); a dummy stands in with its first child.
func sentBefore(a, b *thread) bool {
	for a.item == nil && len(a.children) > 0 {
		a = a.children[0]
	}
	for b.item == nil && len(b.children) > 0 {
		b = b.children[0]
	}
	if a.item == nil || b.item == nil {
		return a.item == nil && b.item != nil
	}
	if c := a.item.date.Compare(b.item.date); c != 0 {
		return c < 0
	}
	return a.item.seq < b.item.seq
}

// orderedSubject implements RFC 5256 §3 ORDEREDSUBJECT: messages sorted
// by base subject, then sent date; each run of one base subject is a
// thread whose first message is the parent of all the others; threads
// sorted by the sent date of their first message.
func orderedSubject(items []sortItem) []*thread {
	sort.SliceStable(items, func(i, j int) bool {
		if items[i].subject != items[j].subject {
			return items[i].subject < items[j].subject
		}
		if c := items[i].date.Compare(items[j].date); c != 0 {
			return c < 0
		}
		return items[i].seq < items[j].seq
	})
	var roots []*thread
	for i := range items {
		it := &items[i]
		if n := len(roots); n > 0 && roots[n-1].item.subject == it.subject {
			roots[n-1].children = append(roots[n-1].children, &thread{item: it, parent: roots[n-1]})
			continue
		}
		roots = append(roots, &thread{item: it})
	}
	sort.SliceStable(roots, func(i, j int) bool { return sentBefore(roots[i], roots[j]) })
	return roots
}

// references implements RFC 5256 §3 REFERENCES. items are in sequence
// order.
func references(items []sortItem) []*thread {
	all := linkReferences(items)
	// (2) Messages without parents are the threads so far.
	var roots []*thread
	for _, n := range all {
		if n.parent == nil {
			roots = append(roots, n)
		}
	}
	// (3) Prune dummies.
	roots = prune(roots, true)
	for _, r := range roots {
		r.parent = nil
	}
	// (4) Sort the top level by sent date; a dummy by its first child.
	for _, r := range roots {
		if r.item == nil {
			sortThreads(r.children)
		}
	}
	sortThreads(roots)
	// (5) Group threads by the base subject of their root.
	roots = groupBySubject(roots)
	// (6) Sort every set of siblings, the deepest first.
	var sortTree func(ts []*thread)
	sortTree = func(ts []*thread) {
		for _, t := range ts {
			sortTree(t.children)
		}
		sortThreads(ts)
	}
	sortTree(roots)
	return roots
}

func sortThreads(ts []*thread) {
	sort.SliceStable(ts, func(i, j int) bool { return sentBefore(ts[i], ts[j]) })
}

// linkReferences is RFC 5256 §3 step 1: a node for every message and
// every referenced id, linked parent to child. It returns the nodes in
// the order they were made.
func linkReferences(items []sortItem) []*thread {
	var all []*thread
	byID := map[string]*thread{} // the id table; ids compare case-sensitively
	node := func(id string) *thread {
		n := byID[id]
		if n == nil {
			n = &thread{} // a dummy until its message shows up
			byID[id] = n
			all = append(all, n)
		}
		return n
	}
	for i := range items {
		it := &items[i]
		var n *thread
		// A message without a valid id, or with the id of an earlier
		// message, gets a unique id: a node of its own.
		if id := it.messageID; id != "" {
			if n = node(id); n.item != nil {
				n = nil
			}
		}
		if n == nil {
			n = &thread{}
			all = append(all, n)
		}
		n.item = it
		// (1)(A) Link the references: each the parent of the next,
		// keeping existing parents and never making a loop.
		var prev *thread
		for _, id := range it.refs {
			r := node(id)
			if prev != nil && r.parent == nil && !isAncestor(r, prev) {
				link(prev, r)
			}
			prev = r
		}
		// (1)(B) The last reference is the message's parent: replace a
		// parent set by a (truncated) References of another message,
		// unless that would make a loop.
		if n.parent != prev {
			unlink(n)
			if prev != nil && !isAncestor(n, prev) {
				link(prev, n)
			}
		}
	}
	return all
}

// isAncestor reports whether a is b or one of b's ancestors.
func isAncestor(a, b *thread) bool {
	for ; b != nil; b = b.parent {
		if b == a {
			return true
		}
	}
	return false
}

func link(parent, child *thread) {
	child.parent = parent
	parent.children = append(parent.children, child)
}

func unlink(n *thread) {
	p := n.parent
	if p == nil {
		return
	}
	for i, c := range p.children {
		if c == n {
			p.children = append(p.children[:i:i], p.children[i+1:]...)
			break
		}
	}
	n.parent = nil
}

// prune is RFC 5256 §3 step 3: a dummy without children goes; a dummy
// with children is replaced by them, except at the top level where it
// stays unless it has just one child.
func prune(ts []*thread, top bool) []*thread {
	var out []*thread
	for _, t := range ts {
		t.children = prune(t.children, false)
		switch {
		case t.item != nil:
			out = append(out, t)
		case len(t.children) == 0:
		case !top || len(t.children) == 1:
			for _, c := range t.children {
				c.parent = t.parent
			}
			out = append(out, t.children...)
		default:
			out = append(out, t)
		}
	}
	return out
}

// threadSubject is the base subject of a thread (RFC 5256 §3 step
// 5.B.i): its root's, or for a dummy its first child's.
func threadSubject(t *thread) (string, bool) {
	if t.item == nil {
		if len(t.children) == 0 {
			return "", false
		}
		t = t.children[0]
	}
	if t.item == nil {
		return "", false
	}
	return t.item.subject, t.item.replyFwd
}

// groupBySubject is RFC 5256 §3 step 5: threads whose roots share a base
// subject are merged.
func groupBySubject(roots []*thread) []*thread {
	// (B) The subject table: one thread per base subject, preferring a
	// dummy, then a message that is not a reply or forward.
	table := map[string]*thread{}
	for _, r := range roots {
		subj, rf := threadSubject(r)
		if subj == "" {
			continue
		}
		cur := table[subj]
		if cur == nil {
			table[subj] = r
		} else if cur.item != nil && (r.item == nil || (cur.item.replyFwd && !rf)) {
			table[subj] = r
		}
	}
	// (C) Merge each thread into the one of the table.
	out := make([]*thread, 0, len(roots))
	pos := map[*thread]int{}
	var later []*thread
	for _, r := range roots {
		subj, _ := threadSubject(r)
		if t := table[subj]; subj == "" || t == r {
			pos[r] = len(out)
			out = append(out, r)
		} else {
			later = append(later, r)
		}
	}
	for _, r := range later {
		subj, rf := threadSubject(r)
		t := table[subj]
		switch {
		case t.item == nil && r.item == nil:
			for _, c := range r.children {
				c.parent = t
			}
			t.children = append(t.children, r.children...)
		case t.item == nil:
			link(t, r)
		case rf && !t.item.replyFwd:
			link(t, r)
		default:
			d := &thread{}
			i := pos[t]
			link(d, t)
			link(d, r)
			out[i], pos[d] = d, i
			table[subj] = d
		}
	}
	return out
}

// writeThreads writes thread lists (RFC 5256 §4): "(a b (c)(d))", a
// chain while a node has one child, a parenthesised list per child when
// it has several; a dummy writes no number.
func writeThreads(w *imap.Writer, ts []*thread, uid bool) {
	for _, t := range ts {
		w.Byte('(')
		writeThread(w, t, uid)
		w.Byte(')')
	}
}

func writeThread(w *imap.Writer, t *thread, uid bool) {
	first := true
	for t.item != nil {
		if !first {
			w.SP()
		}
		first = false
		n := t.item.seq
		if uid {
			n = t.item.uid
		}
		w.Number(uint64(n))
		if len(t.children) != 1 {
			break
		}
		t = t.children[0]
	}
	if len(t.children) == 0 {
		return
	}
	if !first {
		w.SP()
	}
	writeThreads(w, t.children, uid)
}
