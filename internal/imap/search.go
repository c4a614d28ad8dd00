package imap

import (
	"strings"
	"time"
)

// SearchKey is one node of an RFC 9051 §6.4.4 search program.
type SearchKey struct {
	// Op is upper case: a criterion name (ALL, ANSWERED, BCC, BEFORE,
	// BODY, ...), "AND" for a parenthesised list or the implicit top-level
	// conjunction, "OR", "NOT", "SEQ" for a bare sequence set, "UID".
	Op     string
	Value  string    // string argument, keyword, HEADER value
	Field  string    // HEADER field name
	Date   time.Time // BEFORE/ON/SINCE/SENT*
	Number uint64    // LARGER, SMALLER, MODSEQ, OLDER, YOUNGER
	Set    SeqSet    // SEQ, UID
	Sub    []*SearchKey
}

// SearchArgs are SEARCH arguments with RFC 4731 ESEARCH RETURN options.
type SearchArgs struct {
	Charset string
	// Return is nil without RETURN, and empty for "RETURN ()" (= ALL).
	Return    []string
	HasReturn bool
	Key       *SearchKey
}

// SortCriterion is one RFC 5256 sort key.
type SortCriterion struct {
	Key     string // ARRIVAL, CC, DATE, FROM, SIZE, SUBJECT, TO, DISPLAYFROM, DISPLAYTO
	Reverse bool
}

// SortArgs are SORT arguments.
type SortArgs struct {
	Criteria  []SortCriterion
	Charset   string
	Return    []string
	HasReturn bool
	Key       *SearchKey
}

// ThreadArgs are THREAD arguments.
type ThreadArgs struct {
	Algorithm string // REFERENCES, ORDEREDSUBJECT
	Charset   string
	Key       *SearchKey
}

func (p *cmdParser) search(cmd *Command) error {
	var a SearchArgs
	var err error
	if err = p.sp(); err != nil {
		return err
	}
	if a.Return, a.HasReturn, err = p.searchReturn(); err != nil {
		return err
	}
	if a.Charset, err = p.charset(false); err != nil {
		return err
	}
	if a.Key, err = p.searchProgram(); err != nil {
		return err
	}
	cmd.Args = &a
	return nil
}

// searchReturn parses an optional "RETURN (opts) SP".
func (p *cmdParser) searchReturn() ([]string, bool, error) {
	save := p.p
	w, err := p.atom()
	if err != nil || !strings.EqualFold(w, "RETURN") {
		p.p = save
		return nil, false, nil
	}
	if err = p.sp(); err != nil {
		return nil, false, err
	}
	opts, err := p.upperAtomList()
	if err != nil {
		return nil, false, err
	}
	for _, o := range opts {
		switch o {
		case "MIN", "MAX", "ALL", "COUNT", "SAVE":
		default:
			return nil, false, errorf("unknown RETURN option %s", o)
		}
	}
	if opts == nil {
		opts = []string{}
	}
	return opts, true, p.sp()
}

// charset parses an optional (or, for SORT/THREAD, mandatory)
// "CHARSET name SP" / "name SP".
func (p *cmdParser) charset(required bool) (string, error) {
	if required {
		cs, err := p.astring()
		if err != nil {
			return "", err
		}
		return strings.ToUpper(cs), p.sp()
	}
	save := p.p
	w, err := p.atom()
	if err != nil || !strings.EqualFold(w, "CHARSET") {
		p.p = save
		return "", nil
	}
	if err = p.sp(); err != nil {
		return "", err
	}
	cs, err := p.astring()
	if err != nil {
		return "", err
	}
	return strings.ToUpper(cs), p.sp()
}

// searchProgram parses 1*(search-key) separated by SP into an AND node.
func (p *cmdParser) searchProgram() (*SearchKey, error) {
	root := &SearchKey{Op: "AND"}
	for {
		k, err := p.searchKey()
		if err != nil {
			return nil, err
		}
		root.Sub = append(root.Sub, k)
		if len(root.Sub) > 1000 {
			return nil, errorf("search program too long")
		}
		if !p.take(' ') {
			break
		}
	}
	if len(root.Sub) == 1 {
		return root.Sub[0], nil
	}
	return root, nil
}

func (p *cmdParser) searchKey() (*SearchKey, error) {
	p.depth++
	defer func() { p.depth-- }()
	if p.depth > maxDepth {
		return nil, errorf("search program nested too deeply")
	}
	c := p.peek()
	if c == '(' {
		p.take('(')
		k := &SearchKey{Op: "AND"}
		for i := 0; !p.take(')'); i++ {
			if i > 0 {
				if err := p.sp(); err != nil {
					return nil, err
				}
			}
			s, err := p.searchKey()
			if err != nil {
				return nil, err
			}
			k.Sub = append(k.Sub, s)
			if len(k.Sub) > 1000 {
				return nil, errorf("search program too long")
			}
		}
		if len(k.Sub) == 0 {
			return nil, errorf("empty search list")
		}
		return k, nil
	}
	if c >= '0' && c <= '9' || c == '*' || c == '$' {
		set, err := p.seqSet()
		return &SearchKey{Op: "SEQ", Set: set}, err
	}
	w, err := p.atom()
	if err != nil {
		return nil, err
	}
	k := &SearchKey{Op: strings.ToUpper(w)}
	return k, p.searchArgs(k)
}

func (p *cmdParser) searchArgs(k *SearchKey) error {
	var err error
	switch k.Op {
	case "ALL", "ANSWERED", "DELETED", "FLAGGED", "SEEN", "UNANSWERED", "UNDELETED",
		"UNFLAGGED", "UNSEEN", "DRAFT", "UNDRAFT", "NEW", "OLD", "RECENT", "SAVEDATESUPPORTED":
		return nil
	case "BCC", "BODY", "CC", "FROM", "SUBJECT", "TEXT", "TO":
		if err = p.sp(); err != nil {
			return err
		}
		k.Value, err = p.astring()
		return err
	case "KEYWORD", "UNKEYWORD":
		if err = p.sp(); err != nil {
			return err
		}
		k.Value, err = p.flag()
		return err
	case "BEFORE", "ON", "SINCE", "SENTBEFORE", "SENTON", "SENTSINCE",
		"SAVEDBEFORE", "SAVEDON", "SAVEDSINCE":
		if err = p.sp(); err != nil {
			return err
		}
		var d string
		if p.peek() == '"' {
			d, err = p.quoted()
		} else {
			d, err = p.atom()
		}
		if err != nil {
			return err
		}
		k.Date, err = parseDate(d)
		return err
	case "HEADER":
		if err = p.sp(); err != nil {
			return err
		}
		if k.Field, err = p.astring(); err != nil {
			return err
		}
		if err = p.sp(); err != nil {
			return err
		}
		k.Value, err = p.astring()
		return err
	case "LARGER", "SMALLER", "OLDER", "YOUNGER":
		if err = p.sp(); err != nil {
			return err
		}
		k.Number, err = p.number64()
		return err
	case "MODSEQ":
		return p.modseqKey(k)
	case "NOT":
		if err = p.sp(); err != nil {
			return err
		}
		s, err := p.searchKey()
		k.Sub = []*SearchKey{s}
		return err
	case "OR":
		for i := 0; i < 2; i++ {
			if err = p.sp(); err != nil {
				return err
			}
			s, err := p.searchKey()
			if err != nil {
				return err
			}
			k.Sub = append(k.Sub, s)
		}
		return nil
	case "UID":
		if err = p.sp(); err != nil {
			return err
		}
		k.Set, err = p.seqSet()
		return err
	}
	return errorf("unknown search key %s", k.Op)
}

// modseqKey parses RFC 7162 "MODSEQ" [SP entry-name SP entry-type-req]
// SP mod-sequence-valzer.
func (p *cmdParser) modseqKey(k *SearchKey) error {
	if err := p.sp(); err != nil {
		return err
	}
	if p.peek() == '"' {
		if _, err := p.quoted(); err != nil {
			return err
		}
		if err := p.sp(); err != nil {
			return err
		}
		if _, err := p.atom(); err != nil {
			return err
		}
		if err := p.sp(); err != nil {
			return err
		}
	}
	n, err := p.number64()
	k.Number = n
	return err
}

func (p *cmdParser) sort(cmd *Command) error {
	var a SortArgs
	var err error
	if err = p.sp(); err != nil {
		return err
	}
	if a.Return, a.HasReturn, err = p.searchReturn(); err != nil {
		return err
	}
	if err = p.expect('('); err != nil {
		return err
	}
	for i := 0; !p.take(')'); i++ {
		if i > 0 {
			if err = p.sp(); err != nil {
				return err
			}
		}
		w, err := p.atom()
		if err != nil {
			return err
		}
		var c SortCriterion
		if strings.EqualFold(w, "REVERSE") {
			c.Reverse = true
			if err = p.sp(); err != nil {
				return err
			}
			if w, err = p.atom(); err != nil {
				return err
			}
		}
		c.Key = strings.ToUpper(w)
		switch c.Key {
		case "ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO", "DISPLAYFROM", "DISPLAYTO":
		default:
			return errorf("unknown sort key %s", w)
		}
		if len(a.Criteria) > 20 {
			return errorf("too many sort keys")
		}
		a.Criteria = append(a.Criteria, c)
	}
	if len(a.Criteria) == 0 {
		return errorf("empty sort criteria")
	}
	if err = p.sp(); err != nil {
		return err
	}
	if a.Charset, err = p.charset(true); err != nil {
		return err
	}
	if a.Key, err = p.searchProgram(); err != nil {
		return err
	}
	cmd.Args = &a
	return nil
}

func (p *cmdParser) thread(cmd *Command) error {
	var a ThreadArgs
	var err error
	if err = p.sp(); err != nil {
		return err
	}
	w, err := p.atom()
	if err != nil {
		return err
	}
	a.Algorithm = strings.ToUpper(w)
	if a.Algorithm != "REFERENCES" && a.Algorithm != "ORDEREDSUBJECT" {
		return errorf("unknown thread algorithm %s", w)
	}
	if err = p.sp(); err != nil {
		return err
	}
	if a.Charset, err = p.charset(true); err != nil {
		return err
	}
	if a.Key, err = p.searchProgram(); err != nil {
		return err
	}
	cmd.Args = &a
	return nil
}
