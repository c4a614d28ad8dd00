package imapserver

import (
	"mime"
	"net/mail"
	"sort"
	"strings"
	"time"

	"github.com/tern-mail/tern/internal/imap"
	"github.com/tern-mail/tern/internal/message"
)

// sortItem is one message with the keys RFC 5256 sorts and threads on.
type sortItem struct {
	seq, uid  uint32
	arrival   time.Time
	date      time.Time
	size      int64
	subject   string // base subject
	from, to  string
	cc        string
	dispFrom  string
	dispTo    string
	messageID string
	parentIDs []string // References then In-Reply-To, oldest first
}

func decodeWords(s string) string {
	var wd mime.WordDecoder
	if d, err := wd.DecodeHeader(s); err == nil {
		return d
	}
	return s
}

// baseSubject implements RFC 5256 §2.1 (without the charset step).
func baseSubject(s string) string {
	s = strings.ToLower(strings.Join(strings.Fields(decodeWords(s)), " "))
	for {
		old := s
		for _, suf := range []string{"(fwd)", " "} {
			s = strings.TrimSuffix(s, suf)
		}
		for {
			t := strings.TrimLeft(s, " ")
			t = stripBlob(t)
			switch {
			case strings.HasPrefix(t, "re:"):
				t = t[3:]
			case strings.HasPrefix(t, "fw:"):
				t = t[3:]
			case strings.HasPrefix(t, "fwd:"):
				t = t[4:]
			}
			if t == s {
				break
			}
			s = t
		}
		if strings.HasPrefix(s, "[fwd:") && strings.HasSuffix(s, "]") {
			s = s[5 : len(s)-1]
		}
		if s == old {
			return strings.TrimSpace(s)
		}
	}
}

// stripBlob removes one leading "[...]" when something follows it.
func stripBlob(s string) string {
	if !strings.HasPrefix(s, "[") {
		return s
	}
	i := strings.IndexByte(s, ']')
	if i < 0 || strings.TrimSpace(s[i+1:]) == "" {
		return s
	}
	return strings.TrimLeft(s[i+1:], " ")
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
	it.date = it.arrival
	if c.parsed != nil {
		e := &c.parsed.Envelope
		if t, err := mail.ParseDate(e.Date); err == nil {
			it.date = t
		}
		it.subject = baseSubject(e.Subject)
		it.from, it.dispFrom = firstAddr(e.From)
		it.to, it.dispTo = firstAddr(e.To)
		it.cc, _ = firstAddr(e.Cc)
		it.messageID = strings.TrimSpace(e.MessageID)
		for _, refs := range headerValues(c.header, "References") {
			it.parentIDs = append(it.parentIDs, strings.Fields(refs)...)
		}
		// RFC 5256 §2.2 step 1: without References, In-Reply-To.
		if f := strings.Fields(e.InReplyTo); len(it.parentIDs) == 0 && len(f) > 0 {
			it.parentIDs = f[len(f)-1:]
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

// thread is a node of a THREAD answer.
type thread struct {
	item     *sortItem // nil for a dummy
	children []*thread
	date     time.Time
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
	s.w.Raw("* THREAD ")
	for _, t := range roots {
		s.writeThread(t, cmd.UID, true)
	}
	s.w.CRLF()
	return ok("THREAD completed")
}

// orderedSubject: RFC 5256 §3 ORDEREDSUBJECT.
func orderedSubject(items []sortItem) []*thread {
	sort.SliceStable(items, func(i, j int) bool {
		if items[i].subject != items[j].subject {
			return items[i].subject < items[j].subject
		}
		return items[i].date.Before(items[j].date)
	})
	var roots []*thread
	for i := range items {
		it := &items[i]
		if n := len(roots); n > 0 && roots[n-1].item.subject == it.subject {
			roots[n-1].children = append(roots[n-1].children, &thread{item: it, date: it.date})
			continue
		}
		roots = append(roots, &thread{item: it, date: it.date})
	}
	sort.SliceStable(roots, func(i, j int) bool { return roots[i].date.Before(roots[j].date) })
	return roots
}

// references is a simplified RFC 5256 REFERENCES: each message hangs
// under the nearest message it references that is present (the last of
// References, else In-Reply-To), roots with one base subject are merged,
// and siblings are sorted by date. Missing intermediate messages get no
// dummy nodes.
func references(items []sortItem) []*thread {
	byID := map[string]*thread{}
	nodes := make([]*thread, len(items))
	for i := range items {
		nodes[i] = &thread{item: &items[i], date: items[i].date}
		if id := items[i].messageID; id != "" && byID[id] == nil {
			byID[id] = nodes[i]
		}
	}
	var roots []*thread
	for _, n := range nodes {
		var parent *thread
		for _, pid := range n.item.parentIDs {
			if p := byID[pid]; p != nil && p != n && !isDescendant(p, n) {
				parent = p
			}
		}
		if parent != nil {
			parent.children = append(parent.children, n)
		} else {
			roots = append(roots, n)
		}
	}
	// RFC 5256 step 5: roots with the same base subject are siblings.
	bySubj := map[string]*thread{}
	var merged []*thread
	for _, r := range roots {
		subj := r.item.subject
		if first := bySubj[subj]; subj != "" && first != nil {
			first.children = append(first.children, r)
			continue
		}
		bySubj[subj] = r
		merged = append(merged, r)
	}
	var sortTree func(ts []*thread)
	sortTree = func(ts []*thread) {
		sort.SliceStable(ts, func(i, j int) bool { return ts[i].date.Before(ts[j].date) })
		for _, t := range ts {
			sortTree(t.children)
		}
	}
	sortTree(merged)
	return merged
}

func isDescendant(n, of *thread) bool {
	for _, c := range of.children {
		if c == n || isDescendant(n, c) {
			return true
		}
	}
	return false
}

// writeThread writes "(a b (c)(d))": a chain while a node has one child,
// parenthesised siblings when it has several.
func (s *session) writeThread(t *thread, uid bool, top bool) {
	w := s.w
	if top {
		w.Byte('(')
	}
	for {
		n := t.item.seq
		if uid {
			n = t.item.uid
		}
		w.Number(uint64(n))
		if len(t.children) != 1 {
			break
		}
		w.SP()
		t = t.children[0]
	}
	if len(t.children) > 1 {
		w.SP()
		for _, c := range t.children {
			w.Byte('(')
			s.writeThread(c, uid, false)
			w.Byte(')')
		}
	}
	if top {
		w.Byte(')')
	}
}
