package config

import (
	"os"
	"strings"
	"testing"
)

func TestExampleParses(t *testing.T) {
	c, err := Parse([]byte(Example("mail.example.org", "")))
	if err != nil {
		t.Fatal(err)
	}
	if c.Hostname != "mail.example.org" || c.SMTP.Listen[0] != ":25" || c.IMAP.ListenTLS[0] != ":993" || c.Queue.DelayWarning.Hours() != 4 {
		t.Errorf("%+v", c)
	}
	c, err = Parse([]byte(Example("mail.example.org", "192.0.2.1")))
	if err != nil || c.POP3.Listen[0] != "192.0.2.1:110" {
		t.Fatalf("%v %v", c, err)
	}
	if ex := Example("h", "::1"); !strings.Contains(ex, `"[::1]:25"`) {
		t.Errorf("IPv6 listen: %s", ex)
	}
	// Placeholders are filled only where they stand, never inside prose.
	ex := Example("h", "192.0.2.1")
	if strings.Contains(ex, "{") || !strings.Contains(ex, "SMTP greeting") || strings.Count(ex, "192.0.2.1:") != 8 {
		t.Errorf("placeholders leaked or prose rewritten:\n%s", ex)
	}
}

func TestStrictErrors(t *testing.T) {
	cases := []struct{ in, want string }{
		{"hostname = \"h\"\nbogus = 1\n", `line 2: unknown key "bogus"`},
		{"hostname = \"h\"\n[smtp]\nlisten = [\":25\"]\nmax_recipients = \"ten\"\n", `line 4`},
		{"hostname = \"h\"\n[smtp]\nlisten = [\"nocolon\"]\n", `smtp.listen`},
		{"hostname = \"h\"\n[log]\nformat = \"xml\"\n", `log.format`},
		{"[smtp]\n", `hostname`},
		{"hostname = \"h\"\n[queue]\nlifetime = \"forever\"\n", `line 3`},
		{"hostname = \"h\"\n[tls]\ncert = \"c.pem\"\n", `tls.key`},
	}
	for _, c := range cases {
		_, err := Parse([]byte(c.in))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: got %v, want mention of %s", c.in, err, c.want)
		}
	}
}

// The example in the repository is what `tern init` writes.
func TestExampleFileCurrent(t *testing.T) {
	b, err := os.ReadFile("../../tern.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	if want := Example("mail.example.org", ""); string(b) != want {
		t.Errorf("tern.example.toml is stale; regenerate it from config.Example:\n%s", want)
	}
}
