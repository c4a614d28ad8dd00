package imapserver

import (
	"bytes"
	"encoding/base64"
	"io"
	"mime/quotedprintable"
	"strconv"
	"strings"

	"github.com/tern-mail/tern/internal/imap"
	"github.com/tern-mail/tern/internal/message"
	"github.com/tern-mail/tern/internal/store"
)

// writeEnvelope writes an RFC 9051 §7.5.2 envelope from what delivery
// stored. RFC 9051: Sender and Reply-To default to From.
func (s *session) writeEnvelope(e *message.Envelope) {
	w := s.w
	w.Byte('(').NString(e.Date).SP().NString(e.Subject).SP()
	s.writeAddrs(e.From)
	w.SP()
	if len(e.Sender) > 0 {
		s.writeAddrs(e.Sender)
	} else {
		s.writeAddrs(e.From)
	}
	w.SP()
	if len(e.ReplyTo) > 0 {
		s.writeAddrs(e.ReplyTo)
	} else {
		s.writeAddrs(e.From)
	}
	w.SP()
	s.writeAddrs(e.To)
	w.SP()
	s.writeAddrs(e.Cc)
	w.SP()
	s.writeAddrs(e.Bcc)
	w.SP().NString(e.InReplyTo).SP().NString(e.MessageID).Byte(')')
}

func (s *session) writeAddrs(list []message.Address) {
	w := s.w
	if len(list) == 0 {
		w.Raw("NIL")
		return
	}
	w.Byte('(')
	for _, a := range list {
		switch {
		case a.GroupEnd:
			w.Raw("(NIL NIL NIL NIL)")
		case a.GroupStart:
			w.Raw("(NIL NIL ").NString(a.Mailbox).Raw(" NIL)")
		default:
			w.Byte('(').NString(a.Name).SP().NString(a.Adl).SP().NString(a.Mailbox).SP().NString(a.Host).Byte(')')
		}
	}
	w.Byte(')')
}

func isMessagePart(p *message.Part) bool {
	return p.Type == "message" && (p.Subtype == "rfc822" || p.Subtype == "global") && p.Message != nil
}

// writeBodyStructure writes BODY or BODYSTRUCTURE (ext adds extension data).
func (s *session) writeBodyStructure(p *message.Part, ext bool) {
	w := s.w
	if p.Type == "multipart" {
		w.Byte('(')
		if len(p.Parts) == 0 {
			w.Raw(`("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0)`)
		}
		for _, c := range p.Parts {
			s.writeBodyStructure(c, ext)
		}
		w.SP().String(p.Subtype)
		if ext {
			w.SP()
			s.writeParams(p.Params)
			w.SP()
			s.writeDisposition(p)
			w.SP()
			s.writeLanguage(p.Language)
			w.SP().NString(p.Location)
		}
		w.Byte(')')
		return
	}
	w.Byte('(').String(p.Type).SP().String(p.Subtype).SP()
	s.writeParams(p.Params)
	enc := p.Encoding
	if enc == "" {
		enc = "7bit"
	}
	w.SP().NString(p.ID).SP().NString(p.Description).SP().String(enc).SP().Number(uint64(max(p.Size(), 0)))
	switch {
	case isMessagePart(p):
		w.SP()
		if p.Envelope != nil {
			s.writeEnvelope(p.Envelope)
		} else {
			s.writeEnvelope(&message.Envelope{})
		}
		w.SP()
		s.writeBodyStructure(p.Message, ext)
		w.SP().Number(uint64(p.Lines))
	case p.Type == "text":
		w.SP().Number(uint64(p.Lines))
	}
	if ext {
		w.SP().NString(p.MD5).SP()
		s.writeDisposition(p)
		w.SP()
		s.writeLanguage(p.Language)
		w.SP().NString(p.Location)
	}
	w.Byte(')')
}

func (s *session) writeParams(ps []message.Param) {
	if len(ps) == 0 {
		s.w.Raw("NIL")
		return
	}
	s.w.Byte('(')
	for i, p := range ps {
		if i > 0 {
			s.w.SP()
		}
		s.w.String(p.Key).SP().String(p.Value)
	}
	s.w.Byte(')')
}

func (s *session) writeDisposition(p *message.Part) {
	if p.Disposition == "" {
		s.w.Raw("NIL")
		return
	}
	s.w.Byte('(').String(p.Disposition).SP()
	s.writeParams(p.DispositionParams)
	s.w.Byte(')')
}

func (s *session) writeLanguage(l []string) {
	switch len(l) {
	case 0:
		s.w.Raw("NIL")
	case 1:
		s.w.String(l[0])
	default:
		s.w.Byte('(')
		for i, x := range l {
			if i > 0 {
				s.w.SP()
			}
			s.w.String(x)
		}
		s.w.Byte(')')
	}
}

// partAt finds the part a section path names (RFC 9051 §6.4.5): numbers
// index multipart children; after a message/rfc822 part they index into
// the embedded message; a non-multipart has the single part 1.
func partAt(root *message.Part, path []int) *message.Part {
	p := root
	for k, n := range path {
		if k > 0 && isMessagePart(p) {
			p = p.Message
		}
		if p.Type == "multipart" {
			if n < 1 || n > len(p.Parts) {
				return nil
			}
			p = p.Parts[n-1]
		} else if n != 1 {
			return nil
		}
	}
	return p
}

// sectionRange returns the byte range a BODY section covers, and whether
// the result must be filtered to some header fields.
func sectionRange(sec *imap.Section, root *message.Part, size int64) (start, end int64, ok bool) {
	if len(sec.Parts) == 0 {
		switch sec.Specifier {
		case "":
			return 0, size, true
		case "HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT":
			return 0, root.BodyStart, true
		case "TEXT":
			return root.BodyStart, size, true
		}
		return 0, 0, false
	}
	p := partAt(root, sec.Parts)
	if p == nil {
		return 0, 0, false
	}
	switch sec.Specifier {
	case "":
		return p.BodyStart, p.End, true
	case "MIME":
		return p.HeaderStart, p.BodyStart, true
	}
	if !isMessagePart(p) {
		// RFC 9051 §6.4.5: HEADER/TEXT apply to message parts only.
		return 0, 0, true
	}
	m := p.Message
	if sec.Specifier == "TEXT" {
		return m.BodyStart, m.End, true
	}
	return m.HeaderStart, m.BodyStart, true
}

// writeSection writes BODY[...], BINARY[...], BINARY.SIZE[...] and the
// RFC822 forms by seeking in the stored message: nothing is re-parsed.
func (s *session) writeSection(it imap.FetchItem, info store.MessageInfo, p *message.Parsed) {
	w := s.w
	sec := it.Section
	label := it.Name
	switch it.Name {
	case "RFC822":
		sec = &imap.Section{}
	case "RFC822.HEADER":
		sec = &imap.Section{Specifier: "HEADER"}
	case "RFC822.TEXT":
		sec = &imap.Section{Specifier: "TEXT"}
	default:
		label = it.Name + "[" + sec.String() + "]"
	}
	root := &message.Part{BodyStart: info.Size, End: info.Size}
	if p != nil && p.Structure != nil {
		root = p.Structure
	}
	start, end, found := sectionRange(sec, root, info.Size)
	if !found || end < start {
		start, end = 0, 0
	}
	start, end = min(max(start, 0), info.Size), min(max(end, 0), info.Size)
	if it.Name == "BINARY" || it.Name == "BINARY.SIZE" {
		s.writeBinary(it, label, info, root, start, end)
		return
	}
	filter := strings.HasPrefix(sec.Specifier, "HEADER.FIELDS")
	if it.Partial != nil {
		label += "<" + strconv.FormatInt(it.Partial.Offset, 10) + ">"
	}
	w.Raw(label).SP()
	f, err := s.srv.cfg.Store.OpenBlob(info.BlobID)
	if err != nil {
		s.log.Error("open blob", "blob", info.BlobID, "err", err)
		w.Raw("NIL")
		return
	}
	defer f.Close()
	if filter {
		hdr := make([]byte, end-start)
		if _, err := f.ReadAt(hdr, start); err != nil && err != io.EOF {
			w.Raw("NIL")
			return
		}
		out := filterHeader(hdr, sec.Fields, sec.Specifier == "HEADER.FIELDS.NOT")
		w.Literal(partial(out, it.Partial))
		return
	}
	if it.Partial != nil {
		start = min(start+it.Partial.Offset, end)
		end = min(start+it.Partial.Count, end)
	}
	if err := w.LiteralFrom(io.NewSectionReader(f, start, end-start), end-start, false); err != nil {
		s.log.Error("read blob", "blob", info.BlobID, "err", err)
	}
}

func partial(b []byte, p *imap.Partial) []byte {
	if p == nil {
		return b
	}
	start := min(p.Offset, int64(len(b)))
	end := min(start+p.Count, int64(len(b)))
	return b[start:end]
}

// filterHeader keeps (or, with not, drops) the named fields of a header
// block (RFC 9051 §6.4.5 HEADER.FIELDS), ending with the blank line.
func filterHeader(hdr []byte, fields []string, not bool) []byte {
	var out bytes.Buffer
	keep := false
	for len(hdr) > 0 {
		i := bytes.IndexByte(hdr, '\n')
		line := hdr
		if i >= 0 {
			line = hdr[:i+1]
		}
		hdr = hdr[len(line):]
		trimmed := bytes.TrimRight(line, "\r\n")
		if len(trimmed) == 0 {
			break
		}
		if line[0] != ' ' && line[0] != '\t' {
			keep = not
			if c := bytes.IndexByte(trimmed, ':'); c > 0 {
				name := string(bytes.TrimRight(trimmed[:c], " \t"))
				for _, f := range fields {
					if strings.EqualFold(f, name) {
						keep = !not
						break
					}
				}
			}
		}
		if keep {
			out.Write(line)
		}
	}
	out.WriteString("\r\n")
	return out.Bytes()
}

// writeBinary implements RFC 3516 BINARY[section] and BINARY.SIZE.
func (s *session) writeBinary(it imap.FetchItem, label string, info store.MessageInfo, root *message.Part, start, end int64) {
	w := s.w
	enc := ""
	if len(it.Section.Parts) > 0 {
		if p := partAt(root, it.Section.Parts); p != nil {
			enc = strings.ToLower(p.Encoding)
		}
	}
	if !knownCTE(enc) {
		s.unknownCTE = true
		w.Raw(label).Raw(" NIL")
		return
	}
	f, err := s.srv.cfg.Store.OpenBlob(info.BlobID)
	if err != nil {
		w.Raw(label).Raw(" NIL")
		return
	}
	defer f.Close()
	raw := make([]byte, end-start)
	if _, err := f.ReadAt(raw, start); err != nil && err != io.EOF {
		w.Raw(label).Raw(" NIL")
		return
	}
	data := decodeCTE(raw, enc)
	if it.Name == "BINARY.SIZE" {
		w.Raw(label).SP().Number(uint64(len(data)))
		return
	}
	if it.Partial != nil {
		label += "<" + strconv.FormatInt(it.Partial.Offset, 10) + ">"
		data = partial(data, it.Partial)
	}
	w.Raw(label).SP()
	w.LiteralFrom(bytes.NewReader(data), int64(len(data)), bytes.IndexByte(data, 0) >= 0)
}

// knownCTE reports whether decodeCTE can undo enc (lower case).
func knownCTE(enc string) bool {
	switch enc {
	case "", "7bit", "8bit", "binary", "base64", "quoted-printable":
		return true
	}
	return false
}

// decodeCTE undoes a Content-Transfer-Encoding leniently.
func decodeCTE(raw []byte, enc string) []byte {
	switch enc {
	case "base64":
		clean := make([]byte, 0, len(raw))
		for _, c := range raw {
			if c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '/' {
				clean = append(clean, c)
			}
		}
		if len(clean)%4 == 1 {
			clean = clean[:len(clean)-1] // a lone trailing character carries no byte
		}
		out := make([]byte, base64.RawStdEncoding.DecodedLen(len(clean)))
		n, _ := base64.RawStdEncoding.Decode(out, clean)
		return out[:n]
	case "quoted-printable":
		// A malformed sequence ends the decoding; what was decoded stands.
		out, _ := io.ReadAll(quotedprintable.NewReader(bytes.NewReader(raw)))
		return out
	}
	return raw
}
