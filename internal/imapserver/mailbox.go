package imapserver

import (
	"errors"
	"slices"
	"sort"
	"strings"

	"github.com/tern-mail/tern/internal/imap"
	"github.com/tern-mail/tern/internal/store"
)

// storeError maps a store error to a tagged reply.
func (s *session) storeError(err error, what string) reply {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return no("NONEXISTENT", what+": no such mailbox")
	case errors.Is(err, store.ErrExists):
		return no("ALREADYEXISTS", what+": mailbox already exists")
	case errors.Is(err, store.ErrOverQuota):
		return no("OVERQUOTA", what+": quota exceeded")
	case errors.Is(err, store.ErrInvalid):
		return no("CANNOT", what+": not allowed")
	case errors.Is(err, store.ErrUIDsExhausted):
		return no("LIMIT", what+": the mailbox has no UIDs left") // RFC 5530
	}
	s.log.Error(what, "err", err)
	return no("SERVERBUG", what+": internal error")
}

func (s *session) cmdCreate(cmd *imap.Command) reply {
	args := cmd.Args.(*imap.CreateArgs)
	name := strings.TrimSuffix(args.Mailbox, "/")
	if name == "" || name == "INBOX" {
		return no("ALREADYEXISTS", "INBOX always exists")
	}
	use := ""
	for _, u := range args.SpecialUse {
		switch strings.ToLower(u) {
		case `\all`, `\archive`, `\drafts`, `\flagged`, `\junk`, `\sent`, `\trash`:
			use = `\` + strings.ToUpper(u[1:2]) + strings.ToLower(u[2:])
		default:
			// RFC 6154 §3: unknown use: NO [USEATTR].
			return no("USEATTR", "Unsupported special use "+u)
		}
	}
	// RFC 9051 §6.3.4: create missing superiors too.
	parts := strings.Split(name, "/")
	for i := 1; i < len(parts); i++ {
		parent := strings.Join(parts[:i], "/")
		if _, err := s.srv.cfg.Store.MailboxByName(s.ctx, s.acct.ID, parent); errors.Is(err, store.ErrNotFound) {
			if _, err := s.srv.cfg.Store.CreateMailbox(s.ctx, s.acct.ID, parent, ""); err != nil && !errors.Is(err, store.ErrExists) {
				return s.storeError(err, "CREATE")
			}
		}
	}
	if _, err := s.srv.cfg.Store.CreateMailbox(s.ctx, s.acct.ID, name, use); err != nil {
		return s.storeError(err, "CREATE")
	}
	return ok("CREATE completed")
}

func (s *session) cmdDelete(cmd *imap.Command) reply {
	name := cmd.Args.(*imap.MailboxArgs).Mailbox
	if name == "INBOX" {
		return no("CANNOT", "INBOX cannot be deleted")
	}
	if s.sel != nil && s.sel.mb.Name == name {
		return no("INUSE", "Mailbox is selected")
	}
	boxes, err := s.srv.cfg.Store.Mailboxes(s.ctx, s.acct.ID)
	if err != nil {
		return s.storeError(err, "DELETE")
	}
	for _, mb := range boxes {
		// RFC 9051 §6.3.5: a mailbox with inferiors is not deleted by
		// tern (it would need \Noselect, which the store cannot hold).
		if strings.HasPrefix(mb.Name, name+"/") {
			return no("HASCHILDREN", "Mailbox has children; delete them first")
		}
	}
	if err := s.srv.cfg.Store.DeleteMailbox(s.ctx, s.acct.ID, name); err != nil {
		return s.storeError(err, "DELETE")
	}
	return ok("DELETE completed")
}

func (s *session) cmdRename(cmd *imap.Command) reply {
	args := cmd.Args.(*imap.RenameArgs)
	to := strings.TrimSuffix(args.To, "/")
	if to == "INBOX" {
		return no("ALREADYEXISTS", "INBOX always exists")
	}
	if err := s.srv.cfg.Store.RenameMailbox(s.ctx, s.acct.ID, args.From, to); err != nil {
		return s.storeError(err, "RENAME")
	}
	return ok("RENAME completed")
}

func (s *session) cmdSubscribe(cmd *imap.Command) reply {
	name := cmd.Args.(*imap.MailboxArgs).Mailbox
	on := cmd.Name == "SUBSCRIBE"
	if on {
		if _, err := s.srv.cfg.Store.MailboxByName(s.ctx, s.acct.ID, name); err != nil {
			return s.storeError(err, "SUBSCRIBE")
		}
	}
	if err := s.srv.cfg.Store.SetSubscribed(s.ctx, s.acct.ID, name, on); err != nil {
		return s.storeError(err, cmd.Name)
	}
	return ok(cmd.Name + " completed")
}

// maxPatternBytes bounds the LIST patterns of one command (together with
// the reference): matching costs name length times pattern length.
const maxPatternBytes = 1024

// matchPattern implements RFC 9051 §6.3.9 wildcards: "*" matches anything,
// "%" anything but the hierarchy separator. It simulates the pattern as a
// set of positions, one pass over the name: time is len(pat)*len(name)
// whatever the wildcards, where backtracking would be exponential.
func matchPattern(pat, name string) bool {
	pat = squeezeWildcards(pat)
	cur := make([]bool, len(pat)+1)
	next := make([]bool, len(pat)+1)
	// closure: a wildcard may match nothing.
	closure := func(set []bool) {
		for i := 0; i < len(pat); i++ {
			if set[i] && (pat[i] == '*' || pat[i] == '%') {
				set[i+1] = true
			}
		}
	}
	cur[0] = true
	closure(cur)
	for j := 0; j < len(name); j++ {
		c := name[j]
		clear(next)
		alive := false
		for i := 0; i < len(pat); i++ {
			if !cur[i] {
				continue
			}
			switch pat[i] {
			case '*':
				next[i] = true
			case '%':
				if c != '/' {
					next[i] = true
				}
			default:
				if pat[i] == c {
					next[i+1] = true
				}
			}
			alive = true
		}
		if !alive {
			return false
		}
		closure(next)
		cur, next = next, cur
	}
	return cur[len(pat)]
}

// squeezeWildcards turns each run of wildcards into one: "*" if the run
// holds a "*", else "%" ("%%" matches what "%" does).
func squeezeWildcards(pat string) string {
	if !strings.Contains(pat, "**") && !strings.Contains(pat, "%%") && !strings.Contains(pat, "*%") && !strings.Contains(pat, "%*") {
		return pat
	}
	var b strings.Builder
	for i := 0; i < len(pat); {
		if pat[i] != '*' && pat[i] != '%' {
			b.WriteByte(pat[i])
			i++
			continue
		}
		w := byte('%')
		for ; i < len(pat) && (pat[i] == '*' || pat[i] == '%'); i++ {
			if pat[i] == '*' {
				w = '*'
			}
		}
		b.WriteByte(w)
	}
	return b.String()
}

// listEntry is one mailbox in a LIST answer.
type listEntry struct {
	name     string
	mb       *store.Mailbox
	children bool
	sub      bool
	// noselect: LSUB lists the name only for a subscribed descendant.
	noselect bool
}

func (s *session) cmdList(cmd *imap.Command) reply {
	args := cmd.Args.(*imap.ListArgs)
	lsub := cmd.Name == "LSUB"
	if len(args.Patterns) == 1 && args.Patterns[0] == "" && !args.Extended {
		// RFC 9051 §6.3.9: the hierarchy delimiter and root.
		s.w.Raw(`* `).Raw(cmd.Name).Raw(` (\Noselect) "/" ""`).CRLF()
		return ok(cmd.Name + " completed")
	}
	n := 0
	for _, p := range args.Patterns {
		n += len(args.Reference) + len(p)
	}
	if n > maxPatternBytes {
		return no("LIMIT", cmd.Name+" patterns too long")
	}
	entries, err := s.listEntries()
	if err != nil {
		return s.storeError(err, cmd.Name)
	}
	opt := func(list []string, o string) bool {
		for _, x := range list {
			if x == o {
				return true
			}
		}
		return false
	}
	subscribedOnly := lsub || opt(args.SelectOpts, "SUBSCRIBED")
	returnSub := subscribedOnly || opt(args.ReturnOpts, "SUBSCRIBED")
	specialOnly := opt(args.SelectOpts, "SPECIAL-USE") // RFC 6154 §5.1
	// RFC 5258 §3: RECURSIVEMATCH qualifies another selection option, and
	// with SUBSCRIBED also returns a matching mailbox whose descendant is
	// subscribed, marked CHILDINFO ("SUBSCRIBED").
	recursive := opt(args.SelectOpts, "RECURSIVEMATCH")
	if recursive && !slices.ContainsFunc(args.SelectOpts, func(o string) bool { return o != "RECURSIVEMATCH" && o != "REMOTE" }) {
		return bad("RECURSIVEMATCH needs another selection option")
	}
	var subChild map[string]bool
	if recursive && subscribedOnly && !lsub {
		subChild = map[string]bool{}
		for _, e := range entries {
			if !e.sub {
				continue
			}
			for i := strings.LastIndexByte(e.name, '/'); i > 0; i = strings.LastIndexByte(e.name[:i], '/') {
				subChild[e.name[:i]] = true
			}
		}
	}
	var lsubParent map[string]bool
	if lsub {
		lsubParent = lsubPlaceholders(args, entries)
	}
	style := listStyle{verb: cmd.Name, lsub: lsub, returnSub: returnSub, extended: args.Extended}
	for _, e := range entries {
		childInfo := subChild[e.name]
		if lsubParent[e.name] {
			e.noselect = true
		} else if subscribedOnly && !e.sub && !childInfo {
			continue
		}
		if !subscribedOnly && e.mb == nil && !e.children {
			// Only a subscription names it (the mailbox was deleted):
			// LIST selects existing mailboxes and their parents (RFC
			// 5258 §3: SUBSCRIBED alone selects such names).
			continue
		}
		if specialOnly && (e.mb == nil || e.mb.SpecialUse == "") {
			continue
		}
		if !matchesAny(args, e.name) {
			continue
		}
		s.writeListEntry(style, e, childInfo)
		if e.mb != nil && len(args.StatusItems) > 0 {
			// The list leaves out UIDNEXT and HIGHESTMODSEQ, which
			// change with every delivery: read afresh when asked for.
			mb := *e.mb
			if slices.Contains(args.StatusItems, "UIDNEXT") || slices.Contains(args.StatusItems, "HIGHESTMODSEQ") {
				var err error
				if mb, err = s.srv.cfg.Store.MailboxByID(s.ctx, e.mb.ID); err != nil {
					continue // deleted meanwhile
				}
			}
			s.writeStatus(&mb, args.StatusItems)
		}
	}
	return ok(cmd.Name + " completed")
}

// lsubPlaceholders returns the unsubscribed names LSUB must still list,
// as \Noselect: RFC 3501 §6.3.9: with "foo/bar" subscribed and "foo" not,
// LSUB "" "%" returns "foo", since the pattern does not reach "foo/bar".
func lsubPlaceholders(args *imap.ListArgs, entries []listEntry) map[string]bool {
	out := map[string]bool{}
	for _, e := range entries {
		if !e.sub || matchesAny(args, e.name) {
			continue
		}
		for i := strings.LastIndexByte(e.name, '/'); i > 0; i = strings.LastIndexByte(e.name[:i], '/') {
			out[e.name[:i]] = true
		}
	}
	for _, e := range entries {
		if e.sub {
			delete(out, e.name)
		}
	}
	return out
}

func matchesAny(args *imap.ListArgs, name string) bool {
	for _, p := range args.Patterns {
		full := args.Reference + p
		if len(full) >= 5 && strings.EqualFold(full[:5], "INBOX") && (len(full) == 5 || full[5] == '/') {
			full = "INBOX" + full[5:]
		}
		if matchPattern(full, name) {
			return true
		}
	}
	return false
}

// listStyle says how cmdList writes its entries.
type listStyle struct {
	verb      string // LIST or LSUB
	lsub      bool
	returnSub bool // \Subscribed on subscribed entries
	extended  bool // RFC 5258 extended LIST syntax
}

func (s *session) writeListEntry(st listStyle, e listEntry, childInfo bool) {
	var attrs []string
	switch {
	case e.mb == nil && !st.lsub && (s.rev2 || st.extended):
		// RFC 5258 §3.4, RFC 9051 §7.3.1: a name with no mailbox.
		attrs = append(attrs, `\NonExistent`)
	case e.mb == nil, e.noselect:
		attrs = append(attrs, `\Noselect`)
	}
	if e.children {
		attrs = append(attrs, `\HasChildren`)
	} else {
		attrs = append(attrs, `\HasNoChildren`)
	}
	if st.returnSub && e.sub && !st.lsub {
		attrs = append(attrs, `\Subscribed`)
	}
	if e.mb != nil && e.mb.SpecialUse != "" {
		attrs = append(attrs, e.mb.SpecialUse)
	}
	s.w.Raw("* ").Raw(st.verb).SP().Flags(attrs).Raw(` "/" `).Mailbox(e.name)
	if childInfo {
		s.w.Raw(` ("CHILDINFO" ("SUBSCRIBED"))`)
	}
	s.w.CRLF()
}

// listEntries returns every mailbox, implied parent and subscription,
// sorted by name.
func (s *session) listEntries() ([]listEntry, error) {
	boxes, subs, err := s.srv.cfg.Store.MailboxList(s.ctx, s.acct.ID)
	if err != nil {
		return nil, err
	}
	byName := map[string]*listEntry{}
	get := func(name string) *listEntry {
		e := byName[name]
		if e == nil {
			e = &listEntry{name: name}
			byName[name] = e
		}
		return e
	}
	for i := range boxes {
		get(boxes[i].Name).mb = &boxes[i]
	}
	for _, n := range subs {
		get(n).sub = true
	}
	for _, mb := range boxes {
		parts := strings.Split(mb.Name, "/")
		for i := 1; i < len(parts); i++ {
			get(strings.Join(parts[:i], "/")).children = true
		}
	}
	out := make([]listEntry, 0, len(byName))
	for _, e := range byName {
		out = append(out, *e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out, nil
}

func (s *session) cmdStatus(cmd *imap.Command) reply {
	args := cmd.Args.(*imap.StatusArgs)
	mb, err := s.srv.cfg.Store.MailboxByName(s.ctx, s.acct.ID, args.Mailbox)
	if err != nil {
		return s.storeError(err, "STATUS")
	}
	for _, it := range args.Items {
		switch it {
		case "MESSAGES", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "DELETED", "SIZE", "RECENT",
			"HIGHESTMODSEQ", "APPENDLIMIT", "DELETED-STORAGE":
		default:
			return bad("Unknown STATUS item " + it)
		}
	}
	if !s.writeStatus(&mb, args.Items) {
		return no("SERVERBUG", "STATUS failed")
	}
	return ok("STATUS completed")
}

// writeStatus writes "* STATUS name (...)" (RFC 9051 §7.3.4).
func (s *session) writeStatus(mb *store.Mailbox, items []string) bool {
	c, err := s.srv.cfg.Store.MailboxCounts(s.ctx, mb.ID)
	if err != nil {
		s.log.Error("status", "err", err)
		return false
	}
	var deletedBytes int64
	if slices.Contains(items, "DELETED-STORAGE") {
		if deletedBytes, err = s.srv.cfg.Store.DeletedBytes(s.ctx, mb.ID); err != nil {
			s.log.Error("status", "err", err)
			return false
		}
	}
	s.w.Raw("* STATUS ").Mailbox(mb.Name).Raw(" (")
	for i, it := range items {
		if i > 0 {
			s.w.SP()
		}
		s.w.Raw(it).SP()
		switch it {
		case "MESSAGES":
			s.w.Number(uint64(c.Messages))
		case "UIDNEXT":
			s.w.Number(uint64(mb.UIDNext))
		case "UIDVALIDITY":
			s.w.Number(uint64(mb.UIDValidity))
		case "UNSEEN":
			s.w.Number(uint64(c.Unseen))
		case "DELETED":
			s.w.Number(uint64(c.Deleted))
		case "SIZE":
			s.w.Number(uint64(c.Size))
		case "RECENT":
			s.w.Number(0)
		case "HIGHESTMODSEQ":
			s.w.Number(max(mb.HighestModSeq, 1))
		case "APPENDLIMIT":
			s.w.Number(uint64(s.srv.cfg.AppendLimit))
		case "DELETED-STORAGE":
			// In the unit of the STORAGE resource, KiB, rounded up.
			s.w.Number(uint64(deletedBytes+1023) / 1024)
		}
	}
	s.w.Raw(")").CRLF()
	return true
}

// RFC 9208: one quota root "" per account, STORAGE in KiB.
func (s *session) writeQuota() error {
	acct, err := s.srv.cfg.Store.AccountByID(s.ctx, s.acct.ID)
	if err != nil {
		return err
	}
	s.w.Raw(`* QUOTA "" (`)
	if acct.QuotaBytes > 0 {
		s.w.Raw("STORAGE ").Number(uint64(acct.UsedBytes+1023) / 1024).SP().Number(uint64(acct.QuotaBytes) / 1024)
	}
	s.w.Raw(")").CRLF()
	return nil
}

func (s *session) cmdGetQuota(cmd *imap.Command) reply {
	if cmd.Args.(*imap.QuotaRootArgs).Root != "" {
		return no("NONEXISTENT", "No such quota root")
	}
	if err := s.writeQuota(); err != nil {
		return s.storeError(err, "GETQUOTA")
	}
	return ok("GETQUOTA completed")
}

// cmdSetQuota refuses: quotas are the administrator's (tern user quota),
// and RFC 9208 §4.1.3 answers NO to a user who may not set them.
func (s *session) cmdSetQuota(cmd *imap.Command) reply {
	if cmd.Args.(*imap.SetQuotaArgs).Root != "" {
		return no("NONEXISTENT", "No such quota root")
	}
	return no("NOPERM", "Quotas are set by the administrator")
}

func (s *session) cmdGetQuotaRoot(cmd *imap.Command) reply {
	name := cmd.Args.(*imap.MailboxArgs).Mailbox
	if _, err := s.srv.cfg.Store.MailboxByName(s.ctx, s.acct.ID, name); err != nil {
		return s.storeError(err, "GETQUOTAROOT")
	}
	s.w.Raw("* QUOTAROOT ").Mailbox(name).Raw(` ""`).CRLF()
	if err := s.writeQuota(); err != nil {
		return s.storeError(err, "GETQUOTAROOT")
	}
	return ok("GETQUOTAROOT completed")
}

// appendBody returns the bytes APPEND stores for m. Messages are stored
// with CRLF line ends (RFC 9051 §2.3.4 counts RFC822.SIZE in them, and
// BODY[] is sent as stored), so a bare LF from a sloppy client becomes
// CRLF; a lone CR is left alone. A literal8 (RFC 3516 §4.4) is binary
// content and is stored as sent.
func appendBody(m *imap.AppendMessage) []byte {
	if m.Binary {
		return m.Data
	}
	return crlfLines(m.Data)
}

// crlfLines returns b with every LF that does not follow a CR turned into
// CRLF; b itself when it has none.
func crlfLines(b []byte) []byte {
	bare := 0
	for i, c := range b {
		if c == '\n' && (i == 0 || b[i-1] != '\r') {
			bare++
		}
	}
	if bare == 0 {
		return b
	}
	out := make([]byte, 0, len(b)+bare)
	for i, c := range b {
		if c == '\n' && (i == 0 || b[i-1] != '\r') {
			out = append(out, '\r')
		}
		out = append(out, c)
	}
	return out
}
