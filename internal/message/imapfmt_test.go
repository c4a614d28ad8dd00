package message

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
)

// This file writes BODYSTRUCTURE and ENVELOPE the way Dovecot does (sizes
// of the CRLF form, defaults filled in), so that the parser can be compared
// with Dovecot by hand: TERN_DUMP="file ..." go test -run TestDumpIMAP.

func imapString(s string) string {
	if s == "" {
		return "NIL"
	}
	return strconv.Quote(s)
}

func imapParams(ps []Param) string {
	if len(ps) == 0 {
		return "NIL"
	}
	var b []string
	for _, p := range ps {
		b = append(b, strconv.Quote(p.Key)+" "+strconv.Quote(p.Value))
	}
	return "(" + strings.Join(b, " ") + ")"
}

func imapAddrs(as []Address) string {
	if len(as) == 0 {
		return "NIL"
	}
	var b strings.Builder
	b.WriteByte('(')
	for _, a := range as {
		fmt.Fprintf(&b, "(%s %s %s %s)", imapString(a.Name), imapString(a.Adl), imapString(a.Mailbox), imapString(a.Host))
	}
	b.WriteByte(')')
	return b.String()
}

func imapEnvelope(e *Envelope) string {
	return fmt.Sprintf("%s %s %s %s %s %s %s %s %s %s", imapString(e.Date), imapString(e.Subject),
		imapAddrs(e.From), imapAddrs(e.Sender), imapAddrs(e.ReplyTo), imapAddrs(e.To),
		imapAddrs(e.Cc), imapAddrs(e.Bcc), imapString(e.InReplyTo), imapString(e.MessageID))
}

func imapExt(p *Part) string {
	disp := "NIL"
	if p.Disposition != "" {
		disp = "(" + strconv.Quote(p.Disposition) + " " + imapParams(p.DispositionParams) + ")"
	}
	lang := "NIL"
	if len(p.Language) > 0 {
		var ls []string
		for _, l := range p.Language {
			ls = append(ls, strconv.Quote(l))
		}
		lang = "(" + strings.Join(ls, " ") + ")"
	}
	return disp + " " + lang + " " + imapString(p.Location)
}

// imapBody writes p as Dovecot writes BODYSTRUCTURE; top omits the outer
// parentheses as doveadm prints it.
func imapBody(p *Part, top bool) string {
	var s string
	if p.Type == "multipart" {
		var b strings.Builder
		for _, c := range p.Parts {
			b.WriteString(imapBody(c, false))
		}
		s = fmt.Sprintf("%s %s %s %s", b.String(), strconv.Quote(p.Subtype), imapParams(p.Params), imapExt(p))
	} else {
		s = fmt.Sprintf("%s %s %s %s %s %s %d", strconv.Quote(p.Type), strconv.Quote(p.Subtype),
			imapParams(p.Params), imapString(p.ID), imapString(p.Description), strconv.Quote(p.Encoding),
			p.Size()+p.BodyBareLF)
		if isMessageType(p) {
			s += fmt.Sprintf(" (%s) %s %d", imapEnvelope(p.Envelope), "("+imapBody(p.Message, true)+")", p.Lines)
		} else if p.Type == "text" {
			s += fmt.Sprintf(" %d", p.Lines)
		}
		s += " " + imapString(p.MD5) + " " + imapExt(p)
	}
	if top {
		return s
	}
	return "(" + s + ")"
}

func TestDumpIMAP(t *testing.T) {
	files := strings.Fields(os.Getenv("TERN_DUMP"))
	if len(files) == 1 && strings.HasPrefix(files[0], "@") {
		list, err := os.ReadFile(files[0][1:])
		if err != nil {
			t.Fatal(err)
		}
		files = strings.Fields(string(list))
	}
	if len(files) == 0 {
		t.Skip("set TERN_DUMP to a list of message files")
	}
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		m, err := Parse(fh)
		fh.Close()
		if err != nil {
			t.Fatal(err)
		}
		body := imapBody(m.Structure, true)
		if m.Structure.Type != "multipart" {
			body = imapBody(m.Structure, true)
		}
		fmt.Printf("imap.bodystructure: %s\nimap.envelope: %s\nbody.snippet: %s\n\n", body, imapEnvelope(&m.Envelope), m.Preview)
	}
}
