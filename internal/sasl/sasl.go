// Package sasl implements the server side of the SASL mechanisms tern
// offers to IMAP (AUTHENTICATE), POP3 (AUTH, RFC 5034) and SMTP (AUTH, RFC
// 4954): PLAIN (RFC 4616), LOGIN, SCRAM-SHA-256 and SCRAM-SHA-256-PLUS (RFC
// 5802, RFC 7677, channel bindings of RFC 5929 and RFC 9266).
//
// Every mechanism satisfies github.com/emersion/go-sasl's Server interface
// (Next(response) (challenge, done, err)), so go-smtp can use it directly
// and the in-house IMAP and POP3 servers drive it the same way. The package
// does no I/O of its own: the protocol reads and writes the lines, decodes
// base64, enforces line caps, and delays failed logins. Passwords are checked
// through an Authenticator (internal/account's Service), never here.
//
// Final server data: SCRAM ends with a server-final-message ("v=...") that
// the client must see. Next returns it as a challenge with done=false; the
// client answers with an empty response and the next call returns done=true.
// That is the form every SASL profile allows (RFC 4954 §4, RFC 9051 §6.2.2,
// RFC 5034 §4) and the one go-smtp needs, since it drops challenges that come
// with done=true.
package sasl

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"

	gosasl "github.com/emersion/go-sasl"
	"github.com/xdg-go/scram"

	"github.com/tern-mail/tern/internal/account"
	"github.com/tern-mail/tern/internal/store"
)

// Mechanism names, as advertised.
const (
	Plain            = "PLAIN"
	Login            = "LOGIN"
	ScramSHA256      = "SCRAM-SHA-256"
	ScramSHA256Plus  = "SCRAM-SHA-256-PLUS"
	maxResponseBytes = 4096 // no mechanism here needs more in one step
)

// Errors returned by Next. Protocols map them to their replies:
// ErrAuthFailed to "-ERR [AUTH]" / "NO [AUTHENTICATIONFAILED]" / 535 5.7.8,
// ErrMalformed to "-ERR" / "BAD" / 501 5.5.2, ErrUnsupported to an unknown
// mechanism reply; anything else (see IsTemporary) is a server-side failure
// ("-ERR [SYS/TEMP]", "NO [UNAVAILABLE]", 454 4.7.0).
var (
	ErrAuthFailed  = errors.New("authentication failed")
	ErrMalformed   = errors.New("malformed SASL response")
	ErrUnsupported = errors.New("unsupported SASL mechanism")
	ErrDone        = errors.New("SASL exchange already finished")
)

// IsTemporary reports whether err is a server-side failure (store
// unavailable and the like) rather than the client's fault.
func IsTemporary(err error) bool {
	return err != nil && !errors.Is(err, ErrAuthFailed) && !errors.Is(err, ErrMalformed) &&
		!errors.Is(err, ErrUnsupported) && !errors.Is(err, ErrDone)
}

// Authenticator checks credentials. *account.Service satisfies it; tests
// can pass a fake. Both methods return an error wrapping
// account.ErrAuthFailed (or store.ErrNotFound) for unknown users and wrong
// passwords; any other error is treated as temporary.
type Authenticator interface {
	Authenticate(ctx context.Context, username, password string) (store.Account, error)
	ScramSHA256(ctx context.Context, username string) (store.Account, scram.StoredCredentials, error)
}

var _ Authenticator = (*account.Service)(nil)

// Server is one SASL exchange on the server side. It is the go-sasl Server
// plus accessors for the outcome. A Server is used for a single attempt.
type Server interface {
	gosasl.Server
	// Mechanism is the mechanism name, upper case.
	Mechanism() string
	// Account returns the authenticated account once Next has returned
	// done=true with a nil error; ok is false before that.
	Account() (acct store.Account, ok bool)
	// Username is the identity the client claimed (for logs), possibly
	// empty before the first response.
	Username() string
}

// Options configure a Server beyond NewServer's arguments.
type Options struct {
	// Accounts checks the credentials (required).
	Accounts Authenticator
	// TLS is the connection's TLS state; nil on a plaintext connection.
	// SCRAM-SHA-256-PLUS needs it.
	TLS *tls.ConnectionState
	// Certificate is the server's own leaf certificate, needed for the
	// tls-server-end-point channel binding (RFC 5929 §4): a server-side
	// tls.ConnectionState does not carry it. Optional.
	Certificate *x509.Certificate
}

// NewServer starts a SASL exchange for mech (case-insensitive) with the
// credentials checked by accts; cs is the TLS state of the connection or
// nil. ctx bounds the account look-ups made during the exchange.
func NewServer(mech string, ctx context.Context, accts Authenticator, cs *tls.ConnectionState) (Server, error) { //nolint:revive // argument order fixed by the shared contract
	return New(ctx, mech, Options{Accounts: accts, TLS: cs})
}

// New is NewServer with Options. It does not decide whether cleartext
// mechanisms are allowed on the connection: protocols accept only the
// names Mechanisms returned for it.
func New(ctx context.Context, mech string, opts Options) (Server, error) {
	if opts.Accounts == nil {
		return nil, errors.New("sasl: no Authenticator")
	}
	switch strings.ToUpper(mech) {
	case Plain:
		return &plainServer{ctx: ctx, accts: opts.Accounts}, nil
	case Login:
		return &loginServer{ctx: ctx, accts: opts.Accounts}, nil
	case ScramSHA256:
		return newScramServer(ctx, opts, false)
	case ScramSHA256Plus:
		if !PlusAvailable(opts.TLS) {
			return nil, fmt.Errorf("%w: %s needs TLS", ErrUnsupported, ScramSHA256Plus)
		}
		return newScramServer(ctx, opts, true)
	}
	return nil, fmt.Errorf("%w: %q", ErrUnsupported, mech)
}

// Mechanisms lists the mechanisms to advertise on a connection with TLS
// state cs (nil: plaintext). The password mechanisms PLAIN and LOGIN are
// offered only when plaintextOK (TLS is on, or the configuration allows
// cleartext passwords, e.g. loopback in dev mode); SCRAM never exposes the
// password and is always offered.
func Mechanisms(cs *tls.ConnectionState, plaintextOK bool) []string {
	var m []string
	if PlusAvailable(cs) {
		m = append(m, ScramSHA256Plus)
	}
	m = append(m, ScramSHA256)
	if plaintextOK {
		m = append(m, Plain, Login)
	}
	return m
}

// authFailure classifies an error from the Authenticator.
func authFailure(err error) error {
	if errors.Is(err, account.ErrAuthFailed) || errors.Is(err, store.ErrNotFound) {
		return ErrAuthFailed
	}
	return fmt.Errorf("sasl: checking credentials: %w", err)
}
