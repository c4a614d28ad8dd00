package dsn

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func sample() *Report {
	t0 := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	return &Report{
		ReportingMTA: "mail.example.org",
		EnvID:        "QQ314159",
		ArrivalDate:  t0,
		Recipients: []Recipient{{
			OriginalRecipient: "rfc822;bob@example.net",
			FinalRecipient:    "bob@example.net",
			Action:            ActionFailed,
			Status:            "5.1.1",
			RemoteMTA:         "mx.example.net",
			Diagnostic:        "550 5.1.1 no such user",
			LastAttempt:       t0.Add(time.Minute),
		}, {
			FinalRecipient: "carol@example.net",
			Action:         ActionDelayed,
			Status:         "4.4.1",
			Diagnostic:     "connection refused",
			WillRetryUntil: t0.Add(120 * time.Hour),
		}},
	}
}

func TestRoundTrip(t *testing.T) {
	r := sample()
	got, err := Parse(Format(r))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, Clean(r)) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, Clean(r))
	}
}

func TestBuildAndParseMessage(t *testing.T) {
	orig := []byte("From: a@example.org\nTo: bob@example.net\nSubject: hi\n\nsecret body\n")
	for _, full := range []bool{false, true} {
		b, err := Build(&Message{Hostname: "mail.example.org", To: "a@example.org", Report: sample(), Original: orig, Full: full})
		if err != nil {
			t.Fatal(err)
		}
		p, err := ParseMessage(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("%v\n%s", err, b)
		}
		if len(p.Report.Recipients) != 2 || p.Report.EnvID != "QQ314159" || p.Report.Recipients[0].Status != "5.1.1" {
			t.Fatalf("report %+v", p.Report)
		}
		if !strings.Contains(string(p.Original), "Subject: hi") {
			t.Fatalf("original part missing header: %q", p.Original)
		}
		if got := strings.Contains(string(p.Original), "secret body"); got != full {
			t.Fatalf("full=%v but body present=%v", full, got)
		}
		if !strings.Contains(string(b), "Auto-Submitted: auto-replied") {
			t.Fatal("missing Auto-Submitted")
		}
	}
}

func TestNeverToNullSender(t *testing.T) {
	for _, to := range []string{"", "<>", "  "} {
		if _, err := Build(&Message{To: to, Report: sample()}); !errors.Is(err, ErrNullSender) {
			t.Fatalf("To %q: err %v", to, err)
		}
	}
}

func TestParseFolded(t *testing.T) {
	in := "Reporting-MTA: dns;\r\n mx.example.org\r\n\r\nFinal-Recipient: rfc822;x@y\r\nAction: FAILED\r\nStatus: 5.0.0\r\nX-Unknown: z\r\n"
	r, err := Parse([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if r.ReportingMTA != "mx.example.org" || r.Recipients[0].Action != "failed" || r.Recipients[0].FinalRecipient != "x@y" {
		t.Fatalf("%+v", r)
	}
	if _, err := Parse([]byte("garbage without colon")); err == nil {
		t.Fatal("garbage accepted")
	}
}

// FuzzRoundTrip checks Parse(Format(r)) == Clean(r) for generated reports
// and that Parse never panics on arbitrary input.
func FuzzRoundTrip(f *testing.F) {
	f.Add("mail.example.org", "ENV1", int64(1700000000), "bob@example.net", "rfc822;bob@example.net", "failed", "5.1.1", "mx", "550 no", []byte("Reporting-MTA: dns; x\n\nFinal-Recipient: rfc822; y\n"))
	f.Add("", "", int64(0), "", "", "", "", "", "", []byte{})
	f.Add("a\r\nb", ":", int64(-5), "x\ny", ";", "DELAYED", " ", "\t", ";;", []byte("\n \n:"))
	f.Fuzz(func(t *testing.T, mta, envid string, ts int64, rcpt, orcpt, action, status, remote, diag string, raw []byte) {
		if r, err := Parse(raw); err == nil {
			if again, err := Parse(Format(r)); err != nil || !reflect.DeepEqual(again, Clean(r)) {
				t.Fatalf("re-parse of %q: %v\n%+v\n%+v", raw, err, again, Clean(r))
			}
		}
		tm := time.Unix(ts%(1<<34), 0)
		r := &Report{ReportingMTA: mta, EnvID: envid, ArrivalDate: tm, Recipients: []Recipient{
			{FinalRecipient: rcpt, OriginalRecipient: orcpt, Action: action, Status: status, RemoteMTA: remote, Diagnostic: diag, LastAttempt: tm},
			{FinalRecipient: "x@y", Action: ActionDelayed},
		}}
		got, err := Parse(Format(r))
		if err != nil {
			t.Fatalf("parse: %v\n%s", err, Format(r))
		}
		if want := Clean(r); !reflect.DeepEqual(got, want) {
			t.Fatalf("round trip\n got %+v\nwant %+v\n%s", got, want, Format(r))
		}
	})
}
