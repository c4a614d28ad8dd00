package imap

import (
	"strings"
	"time"
)

// list parses RFC 5258 LIST: LIST [SP list-select-opts] SP mailbox SP
// mbox-or-pat [SP list-return-opts].
func (p *cmdParser) list(cmd *Command) error {
	var a ListArgs
	var err error
	if err = p.sp(); err != nil {
		return err
	}
	if p.peek() == '(' {
		a.Extended = true
		if a.SelectOpts, err = p.upperAtomList(); err != nil {
			return err
		}
		if err = p.sp(); err != nil {
			return err
		}
	}
	if a.Reference, err = p.astring(); err != nil {
		return err
	}
	if a.Reference, err = p.decodeName(a.Reference); err != nil {
		return err
	}
	if err = p.sp(); err != nil {
		return err
	}
	if p.take('(') {
		a.Extended = true
		for i := 0; !p.take(')'); i++ {
			if i > 0 {
				if err = p.sp(); err != nil {
					return err
				}
			}
			if err = p.pattern(&a); err != nil {
				return err
			}
		}
	} else if err = p.pattern(&a); err != nil {
		return err
	}
	if p.take(' ') {
		a.Extended = true
		if err = p.listReturn(&a); err != nil {
			return err
		}
	}
	cmd.Args = &a
	return nil
}

func (p *cmdParser) pattern(a *ListArgs) error {
	s, err := p.listMailbox()
	if err != nil {
		return err
	}
	if !p.opt.UTF8 {
		if d, err := DecodeMUTF7(s); err == nil {
			s = d
		}
	}
	if len(a.Patterns) > 100 {
		return errorf("too many patterns")
	}
	a.Patterns = append(a.Patterns, s)
	return nil
}

func (p *cmdParser) listReturn(a *ListArgs) error {
	w, err := p.atom()
	if err != nil {
		return err
	}
	if !strings.EqualFold(w, "RETURN") {
		return errorf("expected RETURN")
	}
	if err = p.sp(); err != nil {
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
		o, err := p.atom()
		if err != nil {
			return err
		}
		o = strings.ToUpper(o)
		a.ReturnOpts = append(a.ReturnOpts, o)
		if o == "STATUS" {
			// RFC 5819: RETURN (STATUS (MESSAGES UNSEEN)).
			if err = p.sp(); err != nil {
				return err
			}
			if a.StatusItems, err = p.upperAtomList(); err != nil {
				return err
			}
		}
		if i > 20 {
			return errorf("too many return options")
		}
	}
	return nil
}

// appendArgs parses APPEND mailbox 1*(SP [flag-list SP] [date-time SP]
// literal) (RFC 3502 MULTIAPPEND, RFC 3516 literal8, RFC 6855 UTF8 (...)).
func (p *cmdParser) appendArgs(cmd *Command) error {
	var a AppendArgs
	var err error
	if err = p.sp(); err != nil {
		return err
	}
	if a.Mailbox, err = p.mailbox(); err != nil {
		return err
	}
	for p.take(' ') {
		var m AppendMessage
		if p.peek() == '(' {
			if m.Flags, err = p.flagList(); err != nil {
				return err
			}
			if err = p.sp(); err != nil {
				return err
			}
		}
		if p.peek() == '"' {
			d, err := p.quoted()
			if err != nil {
				return err
			}
			if m.Date, err = ParseDateTime(d); err != nil {
				return err
			}
			m.HasDate = true
			if err = p.sp(); err != nil {
				return err
			}
		}
		if p.peek() == 'U' || p.peek() == 'u' {
			// RFC 6855 §4: UTF8 (literal8).
			w, err := p.atom()
			if err != nil || !strings.EqualFold(w, "UTF8") {
				return errorf("expected literal")
			}
			if err = p.sp(); err != nil {
				return err
			}
			if err = p.expect('('); err != nil {
				return err
			}
			if m.Data, m.Binary, err = p.literal(true); err != nil {
				return err
			}
			if err = p.expect(')'); err != nil {
				return err
			}
		} else if m.Data, m.Binary, err = p.literal(true); err != nil {
			return err
		}
		a.Messages = append(a.Messages, m)
		if len(a.Messages) > 1000 {
			return errorf("too many messages in one APPEND")
		}
	}
	if len(a.Messages) == 0 {
		return errorf("APPEND needs a message literal")
	}
	cmd.Args = &a
	return nil
}

// ParseDateTime parses an RFC 9051 date-time ("17-Jul-1996 02:44:25 -0700").
func ParseDateTime(s string) (time.Time, error) {
	s = strings.TrimLeft(s, " ")
	t, err := time.Parse("2-Jan-2006 15:04:05 -0700", s)
	if err != nil {
		return time.Time{}, errorf("bad date-time %q", clip([]byte(s)))
	}
	return t, nil
}

// FormatDateTime formats an RFC 9051 date-time.
func FormatDateTime(t time.Time) string {
	return t.Format("02-Jan-2006 15:04:05 -0700")
}

// ParseDate parses an RFC 9051 date ("1-Feb-1994") as used by SEARCH.
func parseDate(s string) (time.Time, error) {
	t, err := time.Parse("2-Jan-2006", s)
	if err != nil {
		return time.Time{}, errorf("bad date %q", clip([]byte(s)))
	}
	return t, nil
}

// store parses STORE seq [SP "(" UNCHANGEDSINCE n ")"] SP store-att-flags.
func (p *cmdParser) store(cmd *Command) error {
	var a StoreArgs
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
		w, err := p.atom()
		if err != nil || !strings.EqualFold(w, "UNCHANGEDSINCE") {
			return errorf("expected UNCHANGEDSINCE")
		}
		if err = p.sp(); err != nil {
			return err
		}
		if a.UnchangedSince, err = p.number64(); err != nil {
			return err
		}
		a.HasUnchangedSince = true
		if err = p.expect(')'); err != nil {
			return err
		}
		if err = p.sp(); err != nil {
			return err
		}
	}
	switch {
	case p.take('+'):
		a.Op = StoreAdd
	case p.take('-'):
		a.Op = StoreRemove
	}
	w, err := p.atom()
	if err != nil {
		return err
	}
	switch strings.ToUpper(w) {
	case "FLAGS":
	case "FLAGS.SILENT":
		a.Silent = true
	default:
		return errorf("expected FLAGS or FLAGS.SILENT")
	}
	if err = p.sp(); err != nil {
		return err
	}
	if p.peek() == '(' {
		if a.Flags, err = p.flagList(); err != nil {
			return err
		}
	} else {
		for {
			f, err := p.flag()
			if err != nil {
				return err
			}
			a.Flags = append(a.Flags, f)
			if !p.take(' ') || len(a.Flags) > 1000 {
				break
			}
		}
	}
	cmd.Args = &a
	return nil
}
