package imap

import (
	"encoding/base64"
	"strings"
	"time"
	"unicode/utf8"
)

// Command is one parsed client command.
type Command struct {
	Tag string
	// Name is the upper-case command name; for "UID FETCH" Name is
	// "FETCH" and UID is true.
	Name string
	UID  bool
	// Args is one of the *Args types of this package, or nil for
	// commands without arguments.
	Args any
}

// LoginArgs are LOGIN's arguments.
type LoginArgs struct{ User, Pass string }

// AuthenticateArgs are AUTHENTICATE's arguments; Initial is the decoded
// SASL-IR initial response (RFC 4959), present when HasInitial, and then
// never nil: "=" gives an empty, non-nil Initial, which a SASL mechanism
// must not take for "no initial response".
type AuthenticateArgs struct {
	Mechanism  string
	Initial    []byte
	HasInitial bool
}

// MailboxArgs carry one mailbox name (DELETE, SUBSCRIBE, UNSUBSCRIBE,
// GETQUOTAROOT). Names are decoded to UTF-8 unless the parse options say
// the client sends modified UTF-7 and it did not decode.
type MailboxArgs struct{ Mailbox string }

// SelectArgs are SELECT/EXAMINE arguments with RFC 7162 parameters.
type SelectArgs struct {
	Mailbox   string
	CondStore bool
	QResync   *QResyncParams
}

// QResyncParams is RFC 7162 §3.2.5 "QRESYNC (uidvalidity modseq [known-uids
// [seq-match]])".
type QResyncParams struct {
	UIDValidity uint32
	ModSeq      uint64
	KnownUIDs   SeqSet
	SeqMatch    *[2]SeqSet // known sequence set, matching UID set
}

// CreateArgs are CREATE's arguments (RFC 6154 USE).
type CreateArgs struct {
	Mailbox    string
	SpecialUse []string
}

// RenameArgs are RENAME's arguments.
type RenameArgs struct{ From, To string }

// ListArgs are LIST/LSUB arguments with RFC 5258 options.
type ListArgs struct {
	Reference   string
	Patterns    []string
	SelectOpts  []string // upper case: SUBSCRIBED, REMOTE, RECURSIVEMATCH, SPECIAL-USE
	ReturnOpts  []string // upper case: SUBSCRIBED, CHILDREN, SPECIAL-USE, STATUS
	StatusItems []string // RFC 5819 RETURN (STATUS (...))
	Extended    bool
}

// StatusArgs are STATUS arguments.
type StatusArgs struct {
	Mailbox string
	Items   []string // upper case
}

// AppendMessage is one message of an APPEND (RFC 3502 MULTIAPPEND).
type AppendMessage struct {
	Flags   []string
	Date    time.Time
	HasDate bool
	Data    []byte
	Binary  bool // literal8 (RFC 3516)
}

// AppendArgs are APPEND's arguments.
type AppendArgs struct {
	Mailbox  string
	Messages []AppendMessage
}

// StoreOp is the STORE operation.
type StoreOp int

// Store operations.
const (
	StoreReplace StoreOp = iota
	StoreAdd
	StoreRemove
)

// StoreArgs are STORE arguments (RFC 7162 UNCHANGEDSINCE).
type StoreArgs struct {
	Set               SeqSet
	Op                StoreOp
	Silent            bool
	Flags             []string
	UnchangedSince    uint64
	HasUnchangedSince bool
}

// CopyArgs are COPY/MOVE arguments.
type CopyArgs struct {
	Set     SeqSet
	Mailbox string
}

// SeqArgs carry a sequence set (UID EXPUNGE).
type SeqArgs struct{ Set SeqSet }

// EnableArgs are ENABLE's capability names (upper case).
type EnableArgs struct{ Caps []string }

// IDArgs are RFC 2971 ID parameters (nil for NIL).
type IDArgs struct{ Params [][2]string }

// CompressArgs carry the COMPRESS mechanism (RFC 4978).
type CompressArgs struct{ Mechanism string }

// QuotaRootArgs carry a quota root name (GETQUOTA).
type QuotaRootArgs struct{ Root string }

// SetQuotaArgs are SETQUOTA arguments.
type SetQuotaArgs struct {
	Root   string
	Limits []QuotaLimit
}

// QuotaLimit is one resource limit of SETQUOTA.
type QuotaLimit struct {
	Resource string
	Limit    int64
}

// Options change how ParseCommand reads names and strings.
type Options struct {
	// UTF8 means the client enabled IMAP4rev2 or UTF8=ACCEPT: mailbox
	// names are UTF-8 and not decoded from modified UTF-7.
	UTF8 bool
}

// ParseCommand parses one framed command: the command line with its
// literals inlined exactly as the framer read them, without the final CRLF.
// A returned error with a non-empty tag means "tag BAD"; with an empty tag
// the server answers "* BAD".
func ParseCommand(b []byte, opt Options) (*Command, error) {
	l := &lexer{b: b, utf8: opt.UTF8}
	tag, err := l.word(isTagChar, "tag")
	if err != nil {
		return nil, err
	}
	cmd := &Command{Tag: tag}
	if err := l.sp(); err != nil {
		return cmd, err
	}
	name, err := l.atom()
	if err != nil {
		return cmd, err
	}
	cmd.Name = strings.ToUpper(name)
	if cmd.Name == "UID" {
		cmd.UID = true
		if err := l.sp(); err != nil {
			return cmd, err
		}
		if name, err = l.atom(); err != nil {
			return cmd, err
		}
		cmd.Name = strings.ToUpper(name)
		switch cmd.Name {
		case "FETCH", "STORE", "SEARCH", "COPY", "MOVE", "EXPUNGE", "SORT", "THREAD":
		default:
			return cmd, errorf("UID %s is not a command", cmd.Name)
		}
	}
	p := &cmdParser{lexer: l, opt: opt}
	if err := p.args(cmd); err != nil {
		return cmd, err
	}
	return cmd, l.end()
}

// isTagChar: tag = 1*<any ASTRING-CHAR except "+">.
func isTagChar(c byte) bool { return isAStringChar(c) && c != '+' }

type cmdParser struct {
	*lexer
	opt Options
}

// mailbox reads a mailbox name and decodes it for rev1 clients.
// RFC 3501 §5.1: INBOX is case-insensitive.
func (p *cmdParser) mailbox() (string, error) {
	s, err := p.astring()
	if err != nil {
		return "", err
	}
	return p.decodeName(s)
}

func (p *cmdParser) decodeName(s string) (string, error) {
	if strings.EqualFold(s, "INBOX") {
		return "INBOX", nil
	}
	if !p.opt.UTF8 {
		d, err := DecodeMUTF7(s)
		switch {
		case err == nil:
			s = d
		case strings.Contains(s, "&") || !utf8.ValidString(s):
			return "", errorf("mailbox name is not valid modified UTF-7")
		}
		// Otherwise raw UTF-8 from a client that did not enable it:
		// tolerated, it cannot be mistaken for an encoded name.
	}
	if len(s) >= 6 && strings.EqualFold(s[:6], "INBOX/") {
		s = "INBOX" + s[5:]
	}
	return s, nil
}

func (p *cmdParser) args(cmd *Command) error {
	switch cmd.Name {
	case "CAPABILITY", "NOOP", "LOGOUT", "STARTTLS", "CHECK", "CLOSE", "UNSELECT",
		"IDLE", "NAMESPACE", "DONE":
		return nil
	case "EXPUNGE":
		if cmd.UID {
			if err := p.sp(); err != nil {
				return err
			}
			set, err := p.seqSet()
			cmd.Args = &SeqArgs{Set: set}
			return err
		}
		return nil
	case "LOGIN":
		return p.login(cmd)
	case "AUTHENTICATE":
		return p.authenticate(cmd)
	case "SELECT", "EXAMINE":
		return p.selectArgs(cmd)
	case "CREATE":
		return p.create(cmd)
	case "DELETE", "SUBSCRIBE", "UNSUBSCRIBE", "GETQUOTAROOT":
		if err := p.sp(); err != nil {
			return err
		}
		mb, err := p.mailbox()
		cmd.Args = &MailboxArgs{Mailbox: mb}
		return err
	case "GETQUOTA":
		if err := p.sp(); err != nil {
			return err
		}
		root, err := p.astring()
		cmd.Args = &QuotaRootArgs{Root: root}
		return err
	case "SETQUOTA":
		return p.setQuota(cmd)
	case "RENAME":
		return p.rename(cmd)
	case "LIST", "LSUB":
		return p.list(cmd)
	case "STATUS":
		return p.status(cmd)
	case "APPEND":
		return p.appendArgs(cmd)
	case "FETCH":
		return p.fetch(cmd)
	case "STORE":
		return p.store(cmd)
	case "COPY", "MOVE":
		return p.copyArgs(cmd)
	case "SEARCH":
		return p.search(cmd)
	case "SORT":
		return p.sort(cmd)
	case "THREAD":
		return p.thread(cmd)
	case "ENABLE":
		return p.enable(cmd)
	case "ID":
		return p.id(cmd)
	case "COMPRESS":
		if err := p.sp(); err != nil {
			return err
		}
		m, err := p.atom()
		cmd.Args = &CompressArgs{Mechanism: strings.ToUpper(m)}
		return err
	}
	return errorf("unknown command %s", cmd.Name)
}

func (p *cmdParser) login(cmd *Command) error {
	var a LoginArgs
	var err error
	if err = p.sp(); err != nil {
		return err
	}
	if a.User, err = p.astring(); err != nil {
		return err
	}
	if err = p.sp(); err != nil {
		return err
	}
	if a.Pass, err = p.astring(); err != nil {
		return err
	}
	cmd.Args = &a
	return nil
}

func (p *cmdParser) authenticate(cmd *Command) error {
	var a AuthenticateArgs
	if err := p.sp(); err != nil {
		return err
	}
	m, err := p.atom()
	if err != nil {
		return err
	}
	a.Mechanism = strings.ToUpper(m)
	if p.take(' ') {
		// RFC 4959 §3: "=" is an empty initial response.
		if p.take('=') {
			a.Initial, a.HasInitial = []byte{}, true
		} else {
			s, err := p.word(isBase64Char, "base64")
			if err != nil {
				return err
			}
			if a.Initial, err = base64.StdEncoding.DecodeString(s); err != nil {
				return errorf("bad base64 initial response")
			}
			a.HasInitial = true
		}
	}
	cmd.Args = &a
	return nil
}

func isBase64Char(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '/' || c == '='
}

// DecodeSASLLine decodes a client's continuation line in AUTHENTICATE:
// base64, or "*" to cancel (RFC 9051 §6.2.2).
func DecodeSASLLine(line []byte) (data []byte, cancel bool, err error) {
	s := strings.TrimRight(string(line), "\r\n")
	if s == "*" {
		return nil, true, nil
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, false, errorf("bad base64 in SASL response")
	}
	return b, false, nil
}

func (p *cmdParser) selectArgs(cmd *Command) error {
	var a SelectArgs
	var err error
	if err = p.sp(); err != nil {
		return err
	}
	if a.Mailbox, err = p.mailbox(); err != nil {
		return err
	}
	cmd.Args = &a
	if !p.take(' ') {
		return nil
	}
	// RFC 4466 select-params: "(" param *(SP param) ")".
	if err := p.expect('('); err != nil {
		return err
	}
	for i := 0; !p.take(')'); i++ {
		if i > 0 {
			if err := p.sp(); err != nil {
				return err
			}
		}
		name, err := p.atom()
		if err != nil {
			return err
		}
		switch strings.ToUpper(name) {
		case "CONDSTORE":
			a.CondStore = true
		case "QRESYNC":
			if err := p.sp(); err != nil {
				return err
			}
			if a.QResync, err = p.qresync(); err != nil {
				return err
			}
		default:
			return errorf("unknown SELECT parameter %s", name)
		}
	}
	return nil
}

func (p *cmdParser) qresync() (*QResyncParams, error) {
	var q QResyncParams
	var err error
	if err = p.expect('('); err != nil {
		return nil, err
	}
	if q.UIDValidity, err = p.number(); err != nil {
		return nil, err
	}
	if err = p.sp(); err != nil {
		return nil, err
	}
	if q.ModSeq, err = p.number64(); err != nil {
		return nil, err
	}
	if p.take(' ') {
		if p.peek() != '(' {
			if q.KnownUIDs, err = p.seqSet(); err != nil {
				return nil, err
			}
			if !p.take(' ') {
				return &q, p.expect(')')
			}
		}
		if err = p.expect('('); err != nil {
			return nil, err
		}
		var m [2]SeqSet
		if m[0], err = p.seqSet(); err != nil {
			return nil, err
		}
		if err = p.sp(); err != nil {
			return nil, err
		}
		if m[1], err = p.seqSet(); err != nil {
			return nil, err
		}
		if err = p.expect(')'); err != nil {
			return nil, err
		}
		q.SeqMatch = &m
	}
	return &q, p.expect(')')
}

func (p *cmdParser) create(cmd *Command) error {
	var a CreateArgs
	var err error
	if err = p.sp(); err != nil {
		return err
	}
	if a.Mailbox, err = p.mailbox(); err != nil {
		return err
	}
	cmd.Args = &a
	if !p.take(' ') {
		return nil
	}
	// RFC 6154 §3: CREATE name (USE (\Sent)).
	if err = p.expect('('); err != nil {
		return err
	}
	name, err := p.atom()
	if err != nil {
		return err
	}
	if !strings.EqualFold(name, "USE") {
		return errorf("unknown CREATE parameter %s", name)
	}
	if err = p.sp(); err != nil {
		return err
	}
	if a.SpecialUse, err = p.atomList(); err != nil {
		return err
	}
	return p.expect(')')
}

func (p *cmdParser) rename(cmd *Command) error {
	var a RenameArgs
	var err error
	if err = p.sp(); err != nil {
		return err
	}
	if a.From, err = p.mailbox(); err != nil {
		return err
	}
	if err = p.sp(); err != nil {
		return err
	}
	if a.To, err = p.mailbox(); err != nil {
		return err
	}
	cmd.Args = &a
	return nil
}

func (p *cmdParser) status(cmd *Command) error {
	var a StatusArgs
	var err error
	if err = p.sp(); err != nil {
		return err
	}
	if a.Mailbox, err = p.mailbox(); err != nil {
		return err
	}
	if err = p.sp(); err != nil {
		return err
	}
	if a.Items, err = p.upperAtomList(); err != nil {
		return err
	}
	cmd.Args = &a
	return nil
}

func (p *cmdParser) upperAtomList() ([]string, error) {
	l, err := p.atomList()
	for i := range l {
		l[i] = strings.ToUpper(l[i])
	}
	return l, err
}

// setQuota reads SETQUOTA root (resource limit ...) (RFC 9208 §4.1.3).
func (p *cmdParser) setQuota(cmd *Command) error {
	var a SetQuotaArgs
	var err error
	if err = p.sp(); err != nil {
		return err
	}
	if a.Root, err = p.astring(); err != nil {
		return err
	}
	if err = p.sp(); err != nil {
		return err
	}
	if err = p.expect('('); err != nil {
		return err
	}
	for !p.take(')') {
		if len(a.Limits) > 0 {
			if err = p.sp(); err != nil {
				return err
			}
		}
		name, err := p.atom()
		if err != nil {
			return err
		}
		if err = p.sp(); err != nil {
			return err
		}
		n, err := p.number64i()
		if err != nil {
			return err
		}
		a.Limits = append(a.Limits, QuotaLimit{Resource: strings.ToUpper(name), Limit: n})
		if len(a.Limits) > 16 {
			return errorf("too many quota resources")
		}
	}
	cmd.Args = &a
	return nil
}

func (p *cmdParser) enable(cmd *Command) error {
	var a EnableArgs
	for p.take(' ') {
		c, err := p.atom()
		if err != nil {
			return err
		}
		a.Caps = append(a.Caps, strings.ToUpper(c))
		if len(a.Caps) > 100 {
			return errorf("too many capabilities")
		}
	}
	if len(a.Caps) == 0 {
		return errorf("ENABLE needs a capability")
	}
	cmd.Args = &a
	return nil
}

func (p *cmdParser) id(cmd *Command) error {
	var a IDArgs
	if err := p.sp(); err != nil {
		return err
	}
	cmd.Args = &a
	if !p.take('(') {
		_, _, err := p.nstring()
		return err
	}
	for i := 0; !p.take(')'); i++ {
		if i > 0 {
			if err := p.sp(); err != nil {
				return err
			}
		}
		k, err := p.string()
		if err != nil {
			return err
		}
		if err := p.sp(); err != nil {
			return err
		}
		v, _, err := p.nstring()
		if err != nil {
			return err
		}
		if i >= 30 { // RFC 2971 §3.3: at most 30 pairs
			return errorf("too many ID parameters")
		}
		a.Params = append(a.Params, [2]string{k, v})
	}
	return nil
}

func (p *cmdParser) copyArgs(cmd *Command) error {
	var a CopyArgs
	var err error
	if err = p.sp(); err != nil {
		return err
	}
	if a.Set, err = p.seqSet(); err != nil {
		return err
	}
	if err = p.sp(); err != nil {
		return err
	}
	if a.Mailbox, err = p.mailbox(); err != nil {
		return err
	}
	cmd.Args = &a
	return nil
}
