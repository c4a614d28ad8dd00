package dns

import (
	"fmt"
	"strings"
	"time"

	"github.com/tern-mail/tern/internal/dkim"
)

// RR is one record to publish.
type RR struct {
	Name  string // fully qualified, with the trailing dot
	Type  string
	Value string // as in a zone file (TXT already quoted and split)
	Note  string // one-line explanation, printed as a comment
}

// RecordsOptions describe a domain served by tern.
type RecordsOptions struct {
	Domain   string
	Hostname string // the mail server's name, e.g. mail.example.org
	IPv4     []string
	IPv6     []string
	DKIM     []dkim.Record
	// MTASTSID is the policy id (RFC 8461 §3.1); it must change whenever
	// the policy changes. Empty: derived from Now.
	MTASTSID string
	Now      time.Time
}

// Records lists every record a domain needs: MX, SPF, DKIM (every
// selector), DMARC, MTA-STS and TLS-RPT, and the client autoconfiguration
// names (autoconfig/autodiscover, RFC 6186 and RFC 8314 SRV records).
func Records(o RecordsOptions) []RR {
	d := strings.TrimSuffix(strings.ToLower(o.Domain), ".") + "."
	h := strings.TrimSuffix(strings.ToLower(o.Hostname), ".") + "."
	id := o.MTASTSID
	if id == "" {
		now := o.Now
		if now.IsZero() {
			now = time.Now()
		}
		id = now.UTC().Format("20060102150405")
	}
	var rrs []RR
	for _, ip := range o.IPv4 {
		rrs = append(rrs, RR{h, "A", ip, "address of the mail server"})
	}
	for _, ip := range o.IPv6 {
		rrs = append(rrs, RR{h, "AAAA", ip, ""})
	}
	rrs = append(rrs,
		RR{d, "MX", "10 " + h, "mail for the domain goes to tern"},
		RR{d, "TXT", quoteTXT("v=spf1 mx -all"), "SPF (RFC 7208): only the MX hosts send"},
	)
	for _, k := range o.DKIM {
		rrs = append(rrs, RR{strings.TrimSuffix(k.Name, ".") + ".", "TXT", quoteTXT(k.Value), "DKIM key (RFC 6376)"})
	}
	rrs = append(rrs,
		RR{"_dmarc." + d, "TXT", quoteTXT("v=DMARC1; p=quarantine; adkim=r; aspf=r; rua=mailto:postmaster@" + strings.TrimSuffix(d, ".")), "DMARC (RFC 7489)"},
		RR{"_mta-sts." + d, "TXT", quoteTXT("v=STSv1; id=" + id), "MTA-STS (RFC 8461); change id when the policy changes"},
		RR{"mta-sts." + d, "CNAME", h, "serves https://mta-sts." + strings.TrimSuffix(d, ".") + "/.well-known/mta-sts.txt"},
		RR{"_smtp._tls." + d, "TXT", quoteTXT("v=TLSRPTv1; rua=mailto:postmaster@" + strings.TrimSuffix(d, ".")), "TLS reporting (RFC 8460)"},
		RR{"autoconfig." + d, "CNAME", h, "Thunderbird autoconfig"},
		RR{"autodiscover." + d, "CNAME", h, "Outlook autodiscover"},
		RR{"_submissions._tcp." + d, "SRV", "0 1 465 " + h, "RFC 8314 implicit TLS submission"},
		RR{"_submission._tcp." + d, "SRV", "0 1 587 " + h, "RFC 6186 submission"},
		RR{"_imaps._tcp." + d, "SRV", "0 1 993 " + h, ""},
		RR{"_imap._tcp." + d, "SRV", "0 1 143 " + h, ""},
		RR{"_pop3s._tcp." + d, "SRV", "0 1 995 " + h, ""},
	)
	return rrs
}

// quoteTXT quotes a TXT value, split in strings of at most 255 bytes
// (RFC 1035 §3.3.14; RFC 6376 §3.6.2.2 joins them back).
func quoteTXT(v string) string {
	var parts []string
	for len(v) > 255 {
		parts = append(parts, `"`+v[:255]+`"`)
		v = v[255:]
	}
	parts = append(parts, `"`+v+`"`)
	if len(parts) == 1 {
		return parts[0]
	}
	return "( " + strings.Join(parts, " ") + " )"
}

// Zone formats records as zone file lines with their notes as comments.
func Zone(rrs []RR) string {
	var b strings.Builder
	for _, rr := range rrs {
		if rr.Note != "" {
			fmt.Fprintf(&b, "; %s\n", rr.Note)
		}
		fmt.Fprintf(&b, "%s\t3600\tIN\t%s\t%s\n", rr.Name, rr.Type, rr.Value)
	}
	return b.String()
}
