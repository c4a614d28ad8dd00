package httpserver

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/tern-mail/tern/internal/store"
)

func testServer(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	st.AddDomain(ctx, "example.org")
	srv := New(Config{Store: st, Hostname: "mail.example.org", Ports: Ports{IMAPS: 993, Submissions: 465, Submission: 587, POP3S: 995}})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	return "http://" + l.Addr().String()
}

func do(t *testing.T, method, url, host, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	req.Host = host
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestEndpoints(t *testing.T) {
	base := testServer(t)
	code, body := do(t, "GET", base+"/.well-known/mta-sts.txt", "mta-sts.example.org", "")
	if code != 200 || body != "version: STSv1\r\nmode: testing\r\nmx: mail.example.org\r\nmax_age: 604800\r\n" {
		t.Errorf("mta-sts: %d %q", code, body)
	}
	if code, _ := do(t, "GET", base+"/.well-known/mta-sts.txt", "mta-sts.other.test", ""); code != 404 {
		t.Errorf("mta-sts for a foreign domain: %d", code)
	}
	code, body = do(t, "GET", base+"/mail/config-v1.1.xml?emailaddress=alice%40example.org", "autoconfig.example.org", "")
	for _, want := range []string{`<incomingServer type="imap">`, "<port>993</port>", "<socketType>SSL</socketType>", `<outgoingServer type="smtp">`, "<port>587</port>", "%EMAILADDRESS%"} {
		if code != 200 || !strings.Contains(body, want) {
			t.Errorf("autoconfig lacks %s: %d\n%s", want, code, body)
		}
	}
	if code, _ := do(t, "GET", base+"/mail/config-v1.1.xml?emailaddress=x%40other.test", "autoconfig.other.test", ""); code != 404 {
		t.Errorf("autoconfig for a foreign domain: %d", code)
	}
	req := `<?xml version="1.0"?><Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006"><Request><EMailAddress>alice@example.org</EMailAddress><AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a</AcceptableResponseSchema></Request></Autodiscover>`
	code, body = do(t, "POST", base+"/autodiscover/autodiscover.xml", "autodiscover.example.org", req)
	if code != 200 || !strings.Contains(body, "<Type>IMAP</Type>") || !strings.Contains(body, "<Port>465</Port>") || !strings.Contains(body, "<LoginName>alice@example.org</LoginName>") {
		t.Errorf("autodiscover: %d\n%s", code, body)
	}
	if code, _ := do(t, "POST", base+"/autodiscover/autodiscover.xml", "x", "not xml"); code != 400 {
		t.Errorf("bad autodiscover: %d", code)
	}
	if code, body := do(t, "GET", base+"/healthz", "x", ""); code != 200 || body != "ok\n" {
		t.Errorf("health: %d %q", code, body)
	}
}
