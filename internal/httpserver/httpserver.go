// Package httpserver serves tern's HTTP endpoints: the MTA-STS policy
// (RFC 8461 §3.2), client autoconfiguration for Thunderbird (autoconfig)
// and Outlook (autodiscover), and a health check. It reads the store only
// to know the local domains, and never writes.
package httpserver

import (
	"context"
	"crypto/tls"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/tern-mail/tern/internal/store"
)

// Ports are the client-facing ports advertised by autoconfiguration; a
// zero port is not advertised.
type Ports struct {
	IMAP, IMAPS, POP3, POP3S, Submission, Submissions int
}

// Config configures a Server.
type Config struct {
	Store    *store.Store
	Hostname string
	Logger   *slog.Logger
	TLS      *tls.Config
	Ports    Ports
	// MTASTSMode is the policy mode published: "testing" (default),
	// "enforce" or "none".
	MTASTSMode string
	// MTASTSMaxAge is the policy lifetime (default one week).
	MTASTSMaxAge time.Duration
}

// Server is the HTTP server, shaped like the other listeners.
type Server struct {
	cfg Config
	srv *http.Server
}

// New returns a Server.
func New(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.MTASTSMode == "" {
		cfg.MTASTSMode = "testing"
	}
	if cfg.MTASTSMaxAge == 0 {
		cfg.MTASTSMaxAge = 7 * 24 * time.Hour
	}
	s := &Server{cfg: cfg}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/mta-sts.txt", s.mtaSTS)
	mux.HandleFunc("GET /mail/config-v1.1.xml", s.autoconfig)
	mux.HandleFunc("GET /.well-known/autoconfig/mail/config-v1.1.xml", s.autoconfig)
	mux.HandleFunc("POST /autodiscover/autodiscover.xml", s.autodiscover)
	mux.HandleFunc("POST /Autodiscover/Autodiscover.xml", s.autodiscover)
	mux.HandleFunc("GET /healthz", s.health)
	s.srv = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
		TLSConfig:         cfg.TLS,
		ErrorLog:          slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelDebug),
	}
	return s
}

// Handler is the request router, for tests.
func (s *Server) Handler() http.Handler { return s.srv.Handler }

// Serve serves plain HTTP on l.
func (s *Server) Serve(l net.Listener) error { return s.srv.Serve(l) }

// ServeTLS serves HTTPS on l.
func (s *Server) ServeTLS(l net.Listener) error {
	if s.cfg.TLS == nil {
		return errors.New("httpserver: ServeTLS without TLS config")
	}
	return s.srv.Serve(tls.NewListener(l, s.cfg.TLS))
}

// Shutdown stops accepting and waits for requests in flight.
func (s *Server) Shutdown(ctx context.Context) error { return s.srv.Shutdown(ctx) }

// hostDomain strips the port and a known prefix from the Host header.
func hostDomain(r *http.Request, prefix string) string {
	h := r.Host
	if host, _, err := net.SplitHostPort(h); err == nil {
		h = host
	}
	h = strings.ToLower(strings.TrimSuffix(h, "."))
	return strings.TrimPrefix(h, prefix)
}

// mtaSTS serves the policy for mta-sts.DOMAIN (RFC 8461 §3.2): the MX is
// this server's host name.
func (s *Server) mtaSTS(w http.ResponseWriter, r *http.Request) {
	domain := hostDomain(r, "mta-sts.")
	if ok, err := s.cfg.Store.IsLocalDomain(r.Context(), domain); err != nil || !ok || !strings.HasPrefix(strings.ToLower(r.Host), "mta-sts.") {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	// RFC 8461 §3.2: lines end in CRLF; max_age in seconds.
	fmt.Fprintf(w, "version: STSv1\r\nmode: %s\r\nmx: %s\r\nmax_age: %d\r\n",
		s.cfg.MTASTSMode, s.cfg.Hostname, int(s.cfg.MTASTSMaxAge.Seconds()))
}

// emailDomain finds the domain a client asks about: its address, or the
// host name it used (autoconfig.DOMAIN).
func (s *Server) emailDomain(r *http.Request, email string) (string, bool) {
	domain := hostDomain(r, "autoconfig.")
	if _, d, ok := store.SplitAddress(email); ok {
		domain = d
	}
	ok, err := s.cfg.Store.IsLocalDomain(r.Context(), domain)
	return domain, err == nil && ok
}

type acServer struct {
	Type       string `xml:"type,attr"`
	Hostname   string `xml:"hostname"`
	Port       int    `xml:"port"`
	SocketType string `xml:"socketType"`
	Username   string `xml:"username"`
	Auth       string `xml:"authentication"`
}

type acProvider struct {
	ID       string     `xml:"id,attr"`
	Domain   string     `xml:"domain"`
	Display  string     `xml:"displayName"`
	Incoming []acServer `xml:"incomingServer"`
	Outgoing []acServer `xml:"outgoingServer"`
}

// autoconfig answers Thunderbird's configuration request.
func (s *Server) autoconfig(w http.ResponseWriter, r *http.Request) {
	domain, ok := s.emailDomain(r, r.URL.Query().Get("emailaddress"))
	if !ok {
		http.NotFound(w, r)
		return
	}
	p := s.cfg.Ports
	srv := func(typ string, port int, socket string) acServer {
		return acServer{Type: typ, Hostname: s.cfg.Hostname, Port: port, SocketType: socket, Username: "%EMAILADDRESS%", Auth: "password-cleartext"}
	}
	prov := acProvider{ID: domain, Domain: domain, Display: domain + " mail"}
	add := func(list *[]acServer, typ string, port int, socket string) {
		if port != 0 {
			*list = append(*list, srv(typ, port, socket))
		}
	}
	add(&prov.Incoming, "imap", p.IMAPS, "SSL")
	add(&prov.Incoming, "imap", p.IMAP, "STARTTLS")
	add(&prov.Incoming, "pop3", p.POP3S, "SSL")
	add(&prov.Incoming, "pop3", p.POP3, "STARTTLS")
	add(&prov.Outgoing, "smtp", p.Submissions, "SSL")
	add(&prov.Outgoing, "smtp", p.Submission, "STARTTLS")
	writeXML(w, struct {
		XMLName  xml.Name   `xml:"clientConfig"`
		Version  string     `xml:"version,attr"`
		Provider acProvider `xml:"emailProvider"`
	}{Version: "1.1", Provider: prov})
}

type adProtocol struct {
	Type       string `xml:"Type"`
	Server     string `xml:"Server"`
	Port       int    `xml:"Port"`
	SSL        string `xml:"SSL"`
	LoginName  string `xml:"LoginName"`
	Encryption string `xml:"Encryption,omitempty"`
}

// autodiscover answers Outlook's POX autodiscover request.
func (s *Server) autodiscover(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Email string `xml:"Request>EMailAddress"`
	}
	if err := xml.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&req); err != nil {
		http.Error(w, "bad autodiscover request", http.StatusBadRequest)
		return
	}
	if _, ok := s.emailDomain(r, req.Email); !ok {
		http.NotFound(w, r)
		return
	}
	var protos []adProtocol
	if s.cfg.Ports.IMAPS != 0 {
		protos = append(protos, adProtocol{Type: "IMAP", Server: s.cfg.Hostname, Port: s.cfg.Ports.IMAPS, SSL: "on", LoginName: req.Email})
	}
	if s.cfg.Ports.Submissions != 0 {
		protos = append(protos, adProtocol{Type: "SMTP", Server: s.cfg.Hostname, Port: s.cfg.Ports.Submissions, SSL: "on", LoginName: req.Email})
	} else if s.cfg.Ports.Submission != 0 {
		protos = append(protos, adProtocol{Type: "SMTP", Server: s.cfg.Hostname, Port: s.cfg.Ports.Submission, SSL: "on", Encryption: "TLS", LoginName: req.Email})
	}
	var resp adResponse
	resp.Response.Type, resp.Response.Action, resp.Response.Protocol = "email", "settings", protos
	writeXML(w, resp)
}

// adResponse is the autodiscover reply (the Outlook 2006a schema).
type adResponse struct {
	XMLName  xml.Name `xml:"http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006 Autodiscover"`
	Response struct {
		XMLName  xml.Name     `xml:"http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a Response"`
		Type     string       `xml:"Account>AccountType"`
		Action   string       `xml:"Account>Action"`
		Protocol []adProtocol `xml:"Account>Protocol"`
	}
}

func writeXML(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/xml; charset=utf-8")
	io.WriteString(w, xml.Header)
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	enc.Encode(v)
}

// health reports whether the store answers.
func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	if _, err := s.cfg.Store.Domains(r.Context()); err != nil {
		http.Error(w, "store: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	io.WriteString(w, "ok\n")
}
