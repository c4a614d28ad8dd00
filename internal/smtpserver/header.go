package smtpserver

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/mail"
	"strings"

	"github.com/tern-mail/tern/internal/smtp"
)

// maxHeaderBytes caps the header section a submission may have; the
// header is held in memory while it is checked and fixed.
const maxHeaderBytes = 256 << 10

// readHeader reads the header section up to and including the empty line
// that ends it (or up to EOF for a message without body).
func readHeader(br *bufio.Reader, max int) ([]byte, error) {
	var hdr []byte
	for {
		line, err := br.ReadSlice('\n')
		if len(hdr)+len(line) > max {
			return nil, &smtp.Reply{Code: 552, Enhanced: smtp.EnhancedCode{5, 3, 4}, Text: "header section too large"}
		}
		hdr = append(hdr, line...)
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err == io.EOF {
			return hdr, nil
		}
		if err != nil {
			return nil, err
		}
		if isBlankLine(line) && (len(hdr) == len(line) || hdr[len(hdr)-len(line)-1] == '\n') {
			return hdr, nil
		}
	}
}

func isBlankLine(line []byte) bool {
	return bytes.Equal(line, []byte("\r\n")) || bytes.Equal(line, []byte("\n"))
}

// headerFix says what a submission's header gets when it lacks it.
type headerFix struct {
	DefaultFrom string // envelope sender, for a missing From
	MessageID   string // "<id@host>"
	Date        string // RFC 5322 date-time
}

// headerInfo is what fixHeader learned.
type headerInfo struct {
	From    []string // addresses of the From field(s)
	BadFrom bool     // a From field that does not parse
	Removed int      // Bcc fields removed
}

// fixHeader applies RFC 6409 §8 to a header section: it removes Bcc
// (§8.1.2 lets an MSA drop it so blind recipients stay blind), and adds
// Message-ID (§8.3), Date (§8.2) and From (§8.1.1) when missing. Bytes of
// the fields it keeps are unchanged.
func fixHeader(hdr []byte, fix headerFix) ([]byte, headerInfo) {
	var info headerInfo
	var out bytes.Buffer
	out.Grow(len(hdr) + 200)
	body, end := splitEnd(hdr)
	have := map[string]bool{}
	for _, f := range splitFields(body) {
		name, value, ok := bytes.Cut(f, []byte(":"))
		key := strings.ToLower(strings.TrimSpace(string(name)))
		if ok {
			have[key] = true
		}
		switch {
		case ok && key == "bcc":
			info.Removed++
			continue
		case ok && key == "from":
			addrs, err := mail.ParseAddressList(unfold(value))
			if err != nil || len(addrs) == 0 {
				info.BadFrom = true
			}
			for _, a := range addrs {
				info.From = append(info.From, a.Address)
			}
		}
		out.Write(f)
	}
	if out.Len() > 0 && out.Bytes()[out.Len()-1] != '\n' {
		out.WriteString("\r\n")
	}
	if !have["from"] && fix.DefaultFrom != "" {
		out.WriteString("From: <" + fix.DefaultFrom + ">\r\n")
		info.From = append(info.From, fix.DefaultFrom)
	}
	if !have["message-id"] {
		out.WriteString("Message-ID: " + fix.MessageID + "\r\n")
	}
	if !have["date"] {
		out.WriteString("Date: " + fix.Date + "\r\n")
	}
	out.Write(end)
	return out.Bytes(), info
}

// splitEnd separates the empty line that ends a header section.
func splitEnd(hdr []byte) (fields, end []byte) {
	for _, e := range []string{"\r\n\r\n", "\n\n", "\n\r\n"} {
		if bytes.HasSuffix(hdr, []byte(e)) {
			n := len(hdr) - len(e) + bytes.IndexByte([]byte(e), '\n') + 1
			return hdr[:n], hdr[n:]
		}
	}
	if isBlankLine(hdr) {
		return nil, hdr
	}
	return hdr, nil
}

// splitFields cuts a header section into fields, each with its
// continuation lines (RFC 5322 §2.2.3) and line endings.
func splitFields(b []byte) [][]byte {
	var fields [][]byte
	start := 0
	for i := 0; i < len(b); {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			j = len(b)
		} else {
			j += i + 1
		}
		if j < len(b) && b[j] != ' ' && b[j] != '\t' {
			fields = append(fields, b[start:j])
			start = j
		}
		i = j
	}
	if start < len(b) {
		fields = append(fields, b[start:])
	}
	return fields
}

func unfold(v []byte) string {
	s := strings.ReplaceAll(string(v), "\r\n", "")
	return strings.TrimSpace(strings.ReplaceAll(s, "\n", ""))
}
