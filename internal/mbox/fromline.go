package mbox

import (
	"strings"
	"time"
)

// fromDateLayouts are the date forms seen after the sender on From_ lines:
// asctime (RFC 4155 §2), with a zone before or after the year, and the
// RFC 5322 form some programs write instead.
var fromDateLayouts = [...]string{
	"Mon Jan 2 15:04:05 2006",
	"Mon Jan 2 15:04:05 2006 -0700",
	"Mon Jan 2 15:04:05 -0700 2006",
	"Mon Jan 2 15:04:05 MST 2006",
	"Mon Jan 2 15:04:05 2006 MST",
	"Mon Jan 2 15:04 2006",
	"Mon, 2 Jan 2006 15:04:05 -0700",
	"Mon, 2 Jan 2006 15:04:05 MST",
	"2 Jan 2006 15:04:05 -0700",
}

// ParseFromLine splits a From_ line (without "From " and line ending) into
// the envelope sender and the date. The date is zero when it cannot be
// read; a date without zone is taken as UTC (RFC 4155 §2 asks for UTC).
func ParseFromLine(line string) (sender string, date time.Time) {
	if i := strings.IndexByte(line, ' '); i >= 0 {
		sender, line = line[:i], line[i+1:]
	} else {
		return line, time.Time{}
	}
	if sender == "-" { // "From - date": no sender (Thunderbird)
		sender = ""
	}
	fields := strings.Fields(line)
	if len(fields) > 8 {
		fields = fields[:8]
	}
	// Try the longest prefix of fields first, so that trailing text such
	// as "remote from host" is ignored.
	for n := len(fields); n >= 4; n-- {
		s := strings.Join(fields[:n], " ")
		for _, layout := range fromDateLayouts {
			if t, err := time.Parse(layout, s); err == nil {
				return sender, t
			}
		}
	}
	return sender, time.Time{}
}

// FormatFromLine returns a From_ line (with "From " and without line
// ending) for an envelope sender and a date: RFC 4155 §2 asks for an
// address without spaces and an asctime date in UTC.
func FormatFromLine(sender string, date time.Time) string {
	sender = cleanSender(sender)
	if date.IsZero() {
		date = time.Unix(0, 0)
	}
	return "From " + sender + " " + date.UTC().Format("Mon Jan _2 15:04:05 2006")
}

// cleanSender makes the sender one token of printable ASCII (no spaces),
// or MAILER-DAEMON when there is none (the usual stand-in for "<>").
func cleanSender(s string) string {
	s = strings.TrimSpace(s)
	s = strings.TrimPrefix(s, "<")
	s = strings.TrimSuffix(s, ">")
	var b strings.Builder
	for i := 0; i < len(s) && b.Len() < 256; i++ {
		c := s[i]
		if c > ' ' && c < 0x7f {
			b.WriteByte(c)
		}
	}
	if b.Len() == 0 {
		return "MAILER-DAEMON"
	}
	return b.String()
}
