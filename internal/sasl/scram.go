package sasl

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"

	"github.com/xdg-go/scram"

	"github.com/tern-mail/tern/internal/store"
)

// GS2Header is the parsed gs2-header that starts a SCRAM client-first
// message (RFC 5802 §7):
//
//	gs2-header     = gs2-cbind-flag "," [ authzid ] ","
//	gs2-cbind-flag = ("p=" cb-name) / "n" / "y"
//	authzid        = "a=" saslname
type GS2Header struct {
	Flag    byte   // 'n', 'y' or 'p'
	CBName  string // channel binding type when Flag is 'p'
	AuthzID string // decoded ("=2C" -> ",", "=3D" -> "=")
}

// ParseGS2Header parses the gs2-header at the start of a client-first
// message and returns it with the rest (client-first-message-bare).
func ParseGS2Header(msg string) (GS2Header, string, error) {
	var h GS2Header
	flag, rest, ok := strings.Cut(msg, ",")
	if !ok {
		return h, "", fmt.Errorf("%w: SCRAM gs2-header incomplete", ErrMalformed)
	}
	switch {
	case flag == "n" || flag == "y":
		h.Flag = flag[0]
	case strings.HasPrefix(flag, "p="):
		h.Flag = 'p'
		h.CBName = flag[2:]
		if !validCBName(h.CBName) {
			return h, "", fmt.Errorf("%w: SCRAM bad channel binding name", ErrMalformed)
		}
	default:
		return h, "", fmt.Errorf("%w: SCRAM bad gs2-cbind-flag", ErrMalformed)
	}
	authz, rest, ok := strings.Cut(rest, ",")
	if !ok {
		return h, "", fmt.Errorf("%w: SCRAM gs2-header incomplete", ErrMalformed)
	}
	if authz != "" {
		name, ok := strings.CutPrefix(authz, "a=")
		if !ok {
			return h, "", fmt.Errorf("%w: SCRAM bad authzid", ErrMalformed)
		}
		dec, ok := decodeSASLName(name)
		if !ok || dec == "" {
			return h, "", fmt.Errorf("%w: SCRAM bad authzid encoding", ErrMalformed)
		}
		h.AuthzID = dec
	}
	return h, rest, nil
}

// validCBName: cb-name = 1*(ALPHA / DIGIT / "." / "-") (RFC 5802 §7).
func validCBName(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

// decodeSASLName undoes RFC 5802 §5.1 saslname escaping: "," is sent as
// "=2C" and "=" as "=3D"; any other "=" is an error.
func decodeSASLName(s string) (string, bool) {
	if !strings.Contains(s, "=") {
		return s, true
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '=' {
			b.WriteByte(s[i])
			continue
		}
		switch {
		case strings.HasPrefix(s[i:], "=2C"):
			b.WriteByte(',')
		case strings.HasPrefix(s[i:], "=3D"):
			b.WriteByte('=')
		default:
			return "", false
		}
		i += 2
	}
	return b.String(), true
}

// PlusAvailable reports whether SCRAM-SHA-256-PLUS can be offered on a
// connection: it needs TLS with a channel binding, tls-exporter on TLS 1.3
// (RFC 9266) or tls-unique on TLS 1.2 (RFC 5929 §3).
func PlusAvailable(cs *tls.ConnectionState) bool {
	_, err := defaultBinding(cs)
	return err == nil
}

// defaultBinding is the binding used to detect downgrades ("y" flag while
// PLUS was advertised, RFC 5802 §6).
func defaultBinding(cs *tls.ConnectionState) (scram.ChannelBinding, error) {
	if cs == nil || !cs.HandshakeComplete {
		return scram.ChannelBinding{}, errors.New("no TLS")
	}
	if cb, err := scram.NewTLSExporterBinding(cs); err == nil {
		return cb, nil
	}
	if cs.Version < tls.VersionTLS13 && len(cs.TLSUnique) > 0 {
		return scram.NewTLSUniqueBinding(cs.TLSUnique), nil
	}
	return scram.ChannelBinding{}, errors.New("no channel binding available")
}

// bindingFor returns the channel binding of the type a PLUS client asked for.
func bindingFor(name string, opts Options) (scram.ChannelBinding, error) {
	cs := opts.TLS
	switch scram.ChannelBindingType(name) {
	case scram.ChannelBindingTLSExporter:
		// RFC 9266 §2: TLS 1.3, or TLS 1.2 with extended master secret
		// (crypto/tls refuses the export otherwise).
		return scram.NewTLSExporterBinding(cs)
	case scram.ChannelBindingTLSUnique:
		// RFC 9266 §3: tls-unique is undefined for TLS 1.3.
		if cs.Version >= tls.VersionTLS13 || len(cs.TLSUnique) == 0 {
			return scram.ChannelBinding{}, errors.New("tls-unique not available on this connection")
		}
		return scram.NewTLSUniqueBinding(cs.TLSUnique), nil
	case scram.ChannelBindingTLSServerEndpoint:
		// RFC 5929 §4.1: hash of our certificate. The helper hashes the
		// "peer" certificate, so hand it ours in that slot.
		if opts.Certificate == nil {
			return scram.ChannelBinding{}, errors.New("tls-server-end-point needs the server certificate")
		}
		return scram.NewTLSServerEndpointBinding(&tls.ConnectionState{PeerCertificates: []*x509.Certificate{opts.Certificate}})
	}
	return scram.ChannelBinding{}, fmt.Errorf("unknown channel binding type %q", name)
}

// scramServer is SCRAM-SHA-256 and SCRAM-SHA-256-PLUS on xdg-go/scram.
type scramServer struct {
	ctx       context.Context
	opts      Options
	plus      bool
	conv      *scram.ServerConversation
	step      int // 0: start; 1: server-first sent; 2: server-final sent; 3: finished
	asked     bool
	username  string
	authzid   string
	acct      store.Account
	found     bool
	lookupErr error
	ok        bool
}

func newScramServer(ctx context.Context, opts Options, plus bool) (*scramServer, error) {
	return &scramServer{ctx: ctx, opts: opts, plus: plus}, nil
}

func (s *scramServer) Mechanism() string {
	if s.plus {
		return ScramSHA256Plus
	}
	return ScramSHA256
}
func (s *scramServer) Username() string               { return s.username }
func (s *scramServer) Account() (store.Account, bool) { return s.acct, s.ok }

// Next implements go-sasl's Server.
func (s *scramServer) Next(response []byte) ([]byte, bool, error) {
	if len(response) > maxResponseBytes {
		s.step = 3
		return nil, true, fmt.Errorf("%w: SCRAM message too long", ErrMalformed)
	}
	switch s.step {
	case 0:
		if response == nil && !s.asked {
			// SCRAM is client-first: invite the client-first message.
			s.asked = true
			return []byte{}, false, nil
		}
		return s.first(string(response))
	case 1:
		return s.final(string(response))
	case 2:
		s.step = 3
		// RFC 5802 §5: the exchange ends after server-final; the client
		// answers our "v=" challenge with an empty response.
		if len(response) != 0 {
			return nil, true, fmt.Errorf("%w: SCRAM expected an empty response", ErrMalformed)
		}
		s.ok = true
		return nil, true, nil
	}
	return nil, true, ErrDone
}

func (s *scramServer) first(c1 string) ([]byte, bool, error) {
	s.step = 3 // until it succeeds
	h, _, err := ParseGS2Header(c1)
	if err != nil {
		return nil, true, err
	}
	// RFC 5802 §6: "p" belongs to the -PLUS mechanism only, and -PLUS
	// requires "p".
	if s.plus != (h.Flag == 'p') {
		return nil, true, fmt.Errorf("%w: SCRAM channel binding flag %q does not fit %s", ErrAuthFailed, h.Flag, s.Mechanism())
	}
	srv, err := scram.SHA256.NewServer(s.lookup)
	if err != nil {
		return nil, true, err
	}
	switch {
	case s.plus:
		cb, err := bindingFor(h.CBName, s.opts)
		if err != nil {
			return nil, true, fmt.Errorf("%w: %v", ErrAuthFailed, err)
		}
		s.conv = srv.NewConversationWithChannelBindingRequired(cb)
	default:
		if cb, err := defaultBinding(s.opts.TLS); err == nil {
			// We advertise PLUS on this connection: a "y" client was
			// downgraded (RFC 5802 §6), and the library refuses it.
			s.conv = srv.NewConversationWithChannelBinding(cb)
		} else {
			s.conv = srv.NewConversation()
		}
	}
	s1, err := s.conv.Step(c1)
	if s.conv.Username() != "" {
		s.username = s.conv.Username()
	}
	if err != nil {
		if s.lookupErr != nil {
			return nil, true, fmt.Errorf("sasl: SCRAM credentials: %w", s.lookupErr)
		}
		if s1 == "" || s1 == scram.ErrInvalidUsernameEncoding || s1 == scram.ErrInvalidEncoding {
			return nil, true, fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		return nil, true, fmt.Errorf("%w: %v", ErrAuthFailed, err)
	}
	s.authzid = h.AuthzID
	s.step = 1
	return []byte(s1), false, nil
}

func (s *scramServer) final(c2 string) ([]byte, bool, error) {
	s.step = 3
	s2, err := s.conv.Step(c2)
	if err != nil {
		if s2 == "" {
			return nil, true, fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		return nil, true, fmt.Errorf("%w: %v", ErrAuthFailed, err)
	}
	if !s.found || !s.conv.Valid() {
		return nil, true, ErrAuthFailed
	}
	if s.authzid != "" && !sameAddress(s.authzid, s.username, s.acct) {
		return nil, true, fmt.Errorf("%w: authorization identity %q not allowed", ErrAuthFailed, s.authzid)
	}
	s.step = 2
	return []byte(s2), false, nil
}

// lookup is the credential callback. For unknown users it returns made-up
// credentials so that the exchange fails only at the proof, like a wrong
// password, instead of answering "e=unknown-user" (RFC 5802 §9 allows the
// server to hide which users exist).
func (s *scramServer) lookup(username string) (scram.StoredCredentials, error) {
	acct, cred, err := s.opts.Accounts.ScramSHA256(s.ctx, username)
	if err == nil {
		s.acct, s.found = acct, true
		return cred, nil
	}
	if IsTemporary(authFailure(err)) {
		s.lookupErr = err
		return scram.StoredCredentials{}, err
	}
	return fakeCredentials(username), nil
}

func fakeCredentials(username string) scram.StoredCredentials {
	salt := sha256.Sum256([]byte("tern scram salt\x00" + strings.ToLower(username)))
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	return scram.StoredCredentials{
		KeyFactors: scram.KeyFactors{Salt: string(salt[:16]), Iters: 4096},
		StoredKey:  key,
		ServerKey:  key,
	}
}
