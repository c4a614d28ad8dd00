// Package dsn builds and parses delivery status notifications (RFC 3464):
// the machine-readable message/delivery-status part and the complete
// multipart/report message (RFC 6522) that the outbound queue sends back to
// a sender. It is pure: it formats and parses bytes and does no I/O.
package dsn

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
)

// Action values of RFC 3464 §2.3.3.
const (
	ActionFailed    = "failed"
	ActionDelayed   = "delayed"
	ActionDelivered = "delivered"
	ActionRelayed   = "relayed"
	ActionExpanded  = "expanded"
)

// Report is the content of a message/delivery-status part.
type Report struct {
	// ReportingMTA is the host name of the MTA writing the report
	// (RFC 3464 §2.2.2, sent as "dns; NAME").
	ReportingMTA string
	// EnvID is the ENVID given by the submitting client (§2.2.1), as xtext
	// decoded; empty when none.
	EnvID string
	// ArrivalDate is when the message entered the queue (§2.2.5).
	ArrivalDate time.Time
	Recipients  []Recipient
}

// Recipient is one per-recipient field group (RFC 3464 §2.3).
type Recipient struct {
	// OriginalRecipient is the ORCPT value with its address type, e.g.
	// "rfc822;bob@example.org" (§2.3.1); empty when none.
	OriginalRecipient string
	// FinalRecipient is the address (§2.3.2, sent as "rfc822; ADDR").
	FinalRecipient string
	Action         string
	// Status is the enhanced status code (RFC 3463), e.g. "5.1.1".
	Status string
	// RemoteMTA is the host that gave the reply (§2.3.5), "" when none.
	RemoteMTA string
	// Diagnostic is the SMTP reply text (§2.3.6, sent as "smtp; TEXT").
	Diagnostic     string
	LastAttempt    time.Time
	WillRetryUntil time.Time
}

// ErrSyntax is returned for delivery-status text that cannot be parsed.
var ErrSyntax = errors.New("dsn: malformed delivery-status")

// clean makes a field value safe for one header line: control characters
// and white space (Unicode's too) fold to one ASCII space, none at the ends.
func clean(s string) string {
	var b strings.Builder
	space := false
	for _, r := range s {
		// Any Unicode space counts, as for the strings.TrimSpace of Parse.
		if r < 0x20 || r == 0x7f || unicode.IsSpace(r) {
			space = true
			continue
		}
		if space && b.Len() > 0 {
			b.WriteByte(' ')
		}
		space = false
		b.WriteRune(r)
	}
	return b.String()
}

// Clean returns r with every field normalised the way Format writes it, so
// that Parse(Format(r)) equals Clean(r). Times are truncated to seconds.
func Clean(r *Report) *Report {
	out := &Report{ReportingMTA: clean(r.ReportingMTA), EnvID: clean(r.EnvID), ArrivalDate: cleanTime(r.ArrivalDate)}
	if out.ReportingMTA == "" {
		out.ReportingMTA = "localhost"
	}
	for _, rc := range r.Recipients {
		if clean(rc.FinalRecipient) == "" {
			continue // a group needs Final-Recipient (RFC 3464 §2.3.2)
		}
		out.Recipients = append(out.Recipients, Recipient{
			OriginalRecipient: cleanORcpt(rc.OriginalRecipient),
			FinalRecipient:    clean(rc.FinalRecipient),
			Action:            strings.ToLower(clean(rc.Action)),
			Status:            clean(rc.Status),
			RemoteMTA:         clean(rc.RemoteMTA),
			Diagnostic:        clean(rc.Diagnostic),
			LastAttempt:       cleanTime(rc.LastAttempt),
			WillRetryUntil:    cleanTime(rc.WillRetryUntil),
		})
	}
	return out
}

func cleanTime(t time.Time) time.Time {
	if t.IsZero() || t.Year() < 1900 || t.Year() > 9999 {
		return time.Time{}
	}
	return time.Unix(t.Unix(), 0).UTC()
}

// cleanORcpt keeps "type;addr" and adds "rfc822;" when the type is missing.
func cleanORcpt(s string) string {
	s = clean(s)
	if s == "" {
		return ""
	}
	typ, addr, ok := strings.Cut(s, ";")
	if !ok {
		return "rfc822;" + s
	}
	typ, addr = strings.TrimSpace(typ), strings.TrimSpace(addr)
	if typ == "" {
		typ = "rfc822"
	}
	return typ + ";" + addr
}

const dateLayout = "Mon, 02 Jan 2006 15:04:05 -0700"

// Format writes the message/delivery-status body: the per-message fields,
// then one blank-line separated group per recipient (RFC 3464 §2.1).
func Format(r *Report) []byte {
	c := Clean(r)
	var b bytes.Buffer
	field := func(name, value string) {
		if value != "" {
			fmt.Fprintf(&b, "%s: %s\r\n", name, value)
		}
	}
	if c.EnvID != "" {
		field("Original-Envelope-Id", c.EnvID)
	}
	field("Reporting-MTA", prefixed("dns", c.ReportingMTA))
	if !c.ArrivalDate.IsZero() {
		field("Arrival-Date", c.ArrivalDate.Format(dateLayout))
	}
	for _, rc := range c.Recipients {
		b.WriteString("\r\n")
		if rc.OriginalRecipient != "" {
			field("Original-Recipient", rc.OriginalRecipient)
		}
		field("Final-Recipient", prefixed("rfc822", rc.FinalRecipient))
		field("Action", rc.Action)
		field("Status", rc.Status)
		field("Remote-MTA", prefixed("dns", rc.RemoteMTA))
		field("Diagnostic-Code", prefixed("smtp", rc.Diagnostic))
		if !rc.LastAttempt.IsZero() {
			field("Last-Attempt-Date", rc.LastAttempt.Format(dateLayout))
		}
		if !rc.WillRetryUntil.IsZero() {
			field("Will-Retry-Until", rc.WillRetryUntil.Format(dateLayout))
		}
	}
	return b.Bytes()
}

// prefixed writes a typed field ("dns; host"); an empty value stays empty
// and is then left out.
func prefixed(typ, v string) string {
	if v == "" {
		return ""
	}
	return typ + "; " + v
}

// unprefix strips "type;" from a typed field value.
func unprefix(v string) string {
	if _, rest, ok := strings.Cut(v, ";"); ok {
		return strings.TrimSpace(rest)
	}
	return strings.TrimSpace(v)
}

// Parse reads a message/delivery-status body. Unknown fields are ignored
// (RFC 3464 §2.4 allows extensions); folded lines are unfolded.
func Parse(body []byte) (*Report, error) {
	groups, err := fieldGroups(body)
	if err != nil {
		return nil, err
	}
	if len(groups) == 0 {
		return nil, ErrSyntax
	}
	r := &Report{}
	for _, f := range groups[0] {
		switch f.name {
		case "original-envelope-id":
			r.EnvID = f.value
		case "reporting-mta":
			r.ReportingMTA = unprefix(f.value)
		case "arrival-date":
			r.ArrivalDate = parseDate(f.value)
		}
	}
	for _, g := range groups[1:] {
		var rc Recipient
		for _, f := range g {
			switch f.name {
			case "original-recipient":
				rc.OriginalRecipient = cleanORcpt(f.value)
			case "final-recipient":
				rc.FinalRecipient = unprefix(f.value)
			case "action":
				rc.Action = strings.ToLower(f.value)
			case "status":
				rc.Status = f.value
			case "remote-mta":
				rc.RemoteMTA = unprefix(f.value)
			case "diagnostic-code":
				rc.Diagnostic = unprefix(f.value)
			case "last-attempt-date":
				rc.LastAttempt = parseDate(f.value)
			case "will-retry-until":
				rc.WillRetryUntil = parseDate(f.value)
			}
		}
		if rc.FinalRecipient == "" {
			return nil, fmt.Errorf("%w: recipient group without Final-Recipient", ErrSyntax)
		}
		r.Recipients = append(r.Recipients, rc)
	}
	return r, nil
}

func parseDate(v string) time.Time {
	for _, layout := range []string{dateLayout, time.RFC1123Z, "Mon, 2 Jan 2006 15:04:05 -0700", "2 Jan 2006 15:04:05 -0700"} {
		if t, err := time.Parse(layout, v); err == nil {
			return t.UTC()
		}
	}
	return time.Time{}
}

type field struct{ name, value string }

// maxFields caps the work done on hostile input.
const maxFields = 10000

// fieldGroups splits the body into blank-line separated groups of
// header-style fields (RFC 3464 §2.1, RFC 5322 §2.2.3 unfolding).
func fieldGroups(body []byte) ([][]field, error) {
	var groups [][]field
	var cur []field
	n := 0
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		if strings.TrimSpace(line) == "" {
			if len(cur) > 0 {
				groups = append(groups, cur)
				cur = nil
			}
			continue
		}
		if line[0] == ' ' || line[0] == '\t' {
			if len(cur) == 0 {
				return nil, fmt.Errorf("%w: continuation without field", ErrSyntax)
			}
			cur[len(cur)-1].value += " " + line
			continue
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("%w: line without colon", ErrSyntax)
		}
		if n++; n > maxFields {
			return nil, fmt.Errorf("%w: too many fields", ErrSyntax)
		}
		cur = append(cur, field{strings.ToLower(strings.TrimSpace(name)), value})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrSyntax, err)
	}
	if len(cur) > 0 {
		groups = append(groups, cur)
	}
	for _, g := range groups {
		for i := range g {
			g[i].value = clean(g[i].value)
		}
	}
	return groups, nil
}
