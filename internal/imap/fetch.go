package imap

import (
	"strconv"
	"strings"
)

// Section is an RFC 9051 section-spec: a part path and an optional
// specifier (HEADER, HEADER.FIELDS, HEADER.FIELDS.NOT, TEXT, MIME).
type Section struct {
	Parts     []int
	Specifier string
	Fields    []string // HEADER.FIELDS(.NOT) names, as sent
}

// String formats the section as it appears between brackets.
func (s *Section) String() string {
	var sb strings.Builder
	for i, n := range s.Parts {
		if i > 0 {
			sb.WriteByte('.')
		}
		sb.WriteString(strconv.Itoa(n))
	}
	if s.Specifier != "" {
		if len(s.Parts) > 0 {
			sb.WriteByte('.')
		}
		sb.WriteString(s.Specifier)
	}
	if strings.HasPrefix(s.Specifier, "HEADER.FIELDS") {
		sb.WriteString(" (")
		for i, f := range s.Fields {
			if i > 0 {
				sb.WriteByte(' ')
			}
			sb.WriteString(astringForm(f))
		}
		sb.WriteByte(')')
	}
	return sb.String()
}

// Partial is "<offset.count>"; Count < 0 means no count (response side).
type Partial struct {
	Offset, Count int64
}

// FetchItem is one fetch-att.
type FetchItem struct {
	// Name is upper case: ENVELOPE, FLAGS, INTERNALDATE, RFC822,
	// RFC822.HEADER, RFC822.SIZE, RFC822.TEXT, BODY, BODYSTRUCTURE, UID,
	// MODSEQ, PREVIEW, BINARY, BINARY.SIZE. BODY with a Section is
	// BODY[...]; BINARY always has one.
	Name    string
	Section *Section
	Peek    bool
	Partial *Partial
}

// FetchArgs are FETCH arguments (RFC 7162 CHANGEDSINCE, VANISHED).
type FetchArgs struct {
	Set          SeqSet
	Items        []FetchItem
	ChangedSince uint64
	Vanished     bool
}

func isFetchNameChar(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.'
}

func (p *cmdParser) fetch(cmd *Command) error {
	var a FetchArgs
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
	if p.take('(') {
		for i := 0; !p.take(')'); i++ {
			if i > 0 {
				if err = p.sp(); err != nil {
					return err
				}
			}
			it, err := p.fetchAtt()
			if err != nil {
				return err
			}
			if len(a.Items) > 100 {
				return errorf("too many fetch items")
			}
			a.Items = append(a.Items, it...)
		}
	} else {
		if a.Items, err = p.fetchAtt(); err != nil {
			return err
		}
	}
	if p.take(' ') {
		if err = p.fetchModifiers(&a); err != nil {
			return err
		}
	}
	cmd.Args = &a
	return nil
}

func (p *cmdParser) fetchModifiers(a *FetchArgs) error {
	if err := p.expect('('); err != nil {
		return err
	}
	for i := 0; !p.take(')'); i++ {
		if i > 0 {
			if err := p.sp(); err != nil {
				return err
			}
		}
		w, err := p.atom()
		if err != nil {
			return err
		}
		switch strings.ToUpper(w) {
		case "CHANGEDSINCE":
			if err := p.sp(); err != nil {
				return err
			}
			if a.ChangedSince, err = p.number64(); err != nil {
				return err
			}
		case "VANISHED":
			a.Vanished = true
		default:
			return errorf("unknown FETCH modifier %s", w)
		}
	}
	return nil
}

// fetchAtt parses one fetch-att; macros expand to several items.
func (p *cmdParser) fetchAtt() ([]FetchItem, error) {
	w, err := p.word(isFetchNameChar, "fetch attribute")
	if err != nil {
		return nil, err
	}
	name := strings.ToUpper(w)
	switch name {
	case "ALL":
		return items("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"), nil
	case "FAST":
		return items("FLAGS", "INTERNALDATE", "RFC822.SIZE"), nil
	case "FULL":
		return items("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"), nil
	case "ENVELOPE", "FLAGS", "INTERNALDATE", "RFC822", "RFC822.HEADER", "RFC822.SIZE",
		"RFC822.TEXT", "BODYSTRUCTURE", "UID", "MODSEQ", "PREVIEW", "SAVEDATE":
		return items(name), nil
	case "BODY", "BODY.PEEK", "BINARY", "BINARY.PEEK", "BINARY.SIZE":
	default:
		return nil, errorf("unknown fetch attribute %s", w)
	}
	it := FetchItem{Name: strings.TrimSuffix(name, ".PEEK"), Peek: strings.HasSuffix(name, ".PEEK")}
	if p.peek() != '[' {
		if name != "BODY" {
			return nil, errorf("%s needs a section", name)
		}
		return []FetchItem{it}, nil
	}
	p.take('[')
	if it.Section, err = p.section(it.Name != "BODY"); err != nil {
		return nil, err
	}
	if p.take('<') && it.Name != "BINARY.SIZE" {
		var pa Partial
		if pa.Offset, err = p.number64i(); err != nil {
			return nil, err
		}
		if err = p.expect('.'); err != nil {
			return nil, err
		}
		if pa.Count, err = p.number64i(); err != nil {
			return nil, err
		}
		if pa.Count == 0 {
			return nil, errorf("partial count must not be 0")
		}
		if err = p.expect('>'); err != nil {
			return nil, err
		}
		it.Partial = &pa
	}
	return []FetchItem{it}, nil
}

func (p *cmdParser) number64i() (int64, error) {
	n, err := p.number64()
	return int64(n), err
}

func items(names ...string) []FetchItem {
	out := make([]FetchItem, len(names))
	for i, n := range names {
		out[i].Name = n
	}
	return out
}

// section parses after "[" up to and including "]". binary restricts it to
// a part path (RFC 3516 section-binary).
func (p *cmdParser) section(binary bool) (*Section, error) {
	s := &Section{}
	for {
		c := p.peek()
		if c < '0' || c > '9' {
			break
		}
		n, err := p.number()
		if err != nil {
			return nil, err
		}
		if n == 0 || len(s.Parts) > 100 {
			return nil, errorf("bad section part")
		}
		s.Parts = append(s.Parts, int(n))
		if !p.take('.') {
			break
		}
	}
	if p.take(']') {
		return s, nil
	}
	if binary {
		return nil, errorf("bad binary section")
	}
	w, err := p.word(isFetchNameChar, "section specifier")
	if err != nil {
		return nil, err
	}
	s.Specifier = strings.ToUpper(w)
	switch s.Specifier {
	case "HEADER", "TEXT":
	case "MIME":
		if len(s.Parts) == 0 {
			return nil, errorf("MIME needs a part number")
		}
	case "HEADER.FIELDS", "HEADER.FIELDS.NOT":
		if err := p.sp(); err != nil {
			return nil, err
		}
		if err := p.expect('('); err != nil {
			return nil, err
		}
		for i := 0; !p.take(')'); i++ {
			if i > 0 {
				if err := p.sp(); err != nil {
					return nil, err
				}
			}
			f, err := p.astring()
			if err != nil {
				return nil, err
			}
			if len(s.Fields) > 200 {
				return nil, errorf("too many header fields")
			}
			s.Fields = append(s.Fields, f)
		}
		if len(s.Fields) == 0 {
			return nil, errorf("empty header list")
		}
	default:
		return nil, errorf("bad section specifier %s", w)
	}
	return s, p.expect(']')
}

// astringForm returns s as an atom when it is one (clients match the
// section they asked for textually), else quoted.
func astringForm(s string) string {
	if s == "" {
		return `""`
	}
	for i := 0; i < len(s); i++ {
		if !isAStringChar(s[i]) || s[i] == ']' {
			return Quote(s)
		}
	}
	return s
}
