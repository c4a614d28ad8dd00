package dsn

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"strings"
	"time"
)

// Message describes a whole notification to build.
type Message struct {
	// Hostname names the reporting MTA; the notification comes from
	// MAILER-DAEMON at this host.
	Hostname string
	// To is the original envelope sender, who receives the notification.
	To     string
	Report *Report
	// Original is the original message (or at least its header).
	Original []byte
	// Full returns the whole original message (RET=FULL, RFC 3461 §4.3);
	// otherwise only its header is returned (RET=HDRS, the default here).
	Full bool
	Date time.Time
}

// ErrNullSender is returned when asked to notify the null sender: RFC 5321
// §4.5.5 and RFC 3461 §6.2 forbid notifications about notifications, which
// is what makes bounce loops impossible.
var ErrNullSender = errors.New("dsn: never notify the null reverse-path")

// Build returns the complete RFC 6522 multipart/report message with the
// human-readable part, the delivery-status part and the original message or
// header.
func Build(m *Message) ([]byte, error) {
	if strings.TrimSpace(m.To) == "" || m.To == "<>" {
		return nil, ErrNullSender
	}
	date := m.Date
	if date.IsZero() {
		date = time.Now()
	}
	var rnd [12]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return nil, err
	}
	boundary := "dsn-" + hex.EncodeToString(rnd[:])
	host := clean(m.Hostname)
	if host == "" {
		host = "localhost"
	}
	r := *m.Report
	r.ReportingMTA = host

	var b bytes.Buffer
	subject := "Undelivered Mail Returned to Sender"
	if allDelayed(&r) {
		subject = "Delayed Mail (still being retried)"
	}
	fmt.Fprintf(&b, "From: Mail Delivery System <MAILER-DAEMON@%s>\r\n", host)
	fmt.Fprintf(&b, "To: <%s>\r\n", clean(m.To))
	fmt.Fprintf(&b, "Subject: %s\r\n", subject)
	fmt.Fprintf(&b, "Date: %s\r\n", date.Format(dateLayout))
	fmt.Fprintf(&b, "Message-ID: <%s@%s>\r\n", boundary, host)
	// RFC 3834 §5: auto-generated, so that responders do not answer it.
	b.WriteString("Auto-Submitted: auto-replied\r\n")
	b.WriteString("MIME-Version: 1.0\r\n")
	fmt.Fprintf(&b, "Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"%s\"\r\n\r\n", boundary)
	b.WriteString("This is a MIME-encapsulated delivery status notification.\r\n\r\n")

	fmt.Fprintf(&b, "--%s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n", boundary)
	writeHuman(&b, &r, host)
	fmt.Fprintf(&b, "\r\n--%s\r\nContent-Type: message/delivery-status\r\n\r\n", boundary)
	b.Write(Format(&r))
	orig := m.Original
	if m.Full {
		fmt.Fprintf(&b, "\r\n--%s\r\nContent-Type: message/rfc822\r\n\r\n", boundary)
	} else {
		// RFC 6522 §4: text/rfc822-headers carries only the header.
		fmt.Fprintf(&b, "\r\n--%s\r\nContent-Type: text/rfc822-headers\r\n\r\n", boundary)
		orig = headerOf(orig)
	}
	b.Write(toCRLF(orig))
	if len(orig) > 0 && !bytes.HasSuffix(b.Bytes(), []byte("\r\n")) {
		b.WriteString("\r\n")
	}
	fmt.Fprintf(&b, "\r\n--%s--\r\n", boundary)
	return b.Bytes(), nil
}

func allDelayed(r *Report) bool {
	for _, rc := range r.Recipients {
		if rc.Action != ActionDelayed {
			return false
		}
	}
	return len(r.Recipients) > 0
}

func writeHuman(b *bytes.Buffer, r *Report, host string) {
	if allDelayed(r) {
		fmt.Fprintf(b, "This is the mail system at %s.\r\n\r\nYour message has not been delivered yet. It is still in the queue and\r\ndelivery will be retried; you do not need to send it again.\r\n\r\n", host)
	} else {
		fmt.Fprintf(b, "This is the mail system at %s.\r\n\r\nYour message could not be delivered to one or more recipients.\r\n\r\n", host)
	}
	for _, rc := range Clean(r).Recipients {
		fmt.Fprintf(b, "<%s>: %s", rc.FinalRecipient, rc.Action)
		if rc.RemoteMTA != "" {
			fmt.Fprintf(b, " (host %s)", rc.RemoteMTA)
		}
		if rc.Diagnostic != "" {
			fmt.Fprintf(b, ": %s", rc.Diagnostic)
		}
		b.WriteString("\r\n")
	}
}

// headerOf returns the header section of a message, blank line excluded.
func headerOf(msg []byte) []byte {
	for _, sep := range [][]byte{[]byte("\r\n\r\n"), []byte("\n\n")} {
		if i := bytes.Index(msg, sep); i >= 0 {
			return msg[:i+len(sep)/2]
		}
	}
	return msg
}

func toCRLF(b []byte) []byte {
	var out bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 4096), len(b)+1)
	for sc.Scan() {
		out.Write(bytes.TrimRight(sc.Bytes(), "\r"))
		out.WriteString("\r\n")
	}
	return out.Bytes()
}

// Parsed is a notification read back by ParseMessage.
type Parsed struct {
	Subject string
	Report  *Report
	// Original is the returned message or header part.
	Original []byte
}

// ParseMessage reads a multipart/report delivery-status notification.
func ParseMessage(r io.Reader) (*Parsed, error) {
	msg, err := mail.ReadMessage(r)
	if err != nil {
		return nil, fmt.Errorf("dsn: %w", err)
	}
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/report" || params["boundary"] == "" {
		return nil, fmt.Errorf("%w: not a multipart/report", ErrSyntax)
	}
	p := &Parsed{Subject: msg.Header.Get("Subject")}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	for {
		part, err := mr.NextRawPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrSyntax, err)
		}
		body, err := io.ReadAll(io.LimitReader(part, 64<<20))
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrSyntax, err)
		}
		ct, _, _ := mime.ParseMediaType(part.Header.Get("Content-Type"))
		switch ct {
		case "message/delivery-status", "message/global-delivery-status":
			if p.Report, err = Parse(body); err != nil {
				return nil, err
			}
		case "message/rfc822", "text/rfc822-headers", "message/global", "message/global-headers":
			p.Original = body
		}
	}
	if p.Report == nil {
		return nil, fmt.Errorf("%w: no delivery-status part", ErrSyntax)
	}
	return p, nil
}
