package sasl

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/tern-mail/tern/internal/store"
)

// maxPlainField caps each PLAIN field. RFC 4616 §2 asks servers to accept
// at least 255 octets per field; we accept up to 1024.
const maxPlainField = 1024

// ParsePlain splits a PLAIN message (RFC 4616 §2):
//
//	message = [authzid] UTF8NUL authcid UTF8NUL passwd
//
// authcid and passwd must be non-empty; all three are valid UTF-8 without
// NUL and at most maxPlainField octets.
func ParsePlain(b []byte) (authzid, authcid, passwd string, err error) {
	parts := bytes.Split(b, []byte{0})
	if len(parts) != 3 {
		return "", "", "", fmt.Errorf("%w: PLAIN needs authzid NUL authcid NUL passwd", ErrMalformed)
	}
	for i, p := range parts {
		if len(p) > maxPlainField || !utf8.Valid(p) {
			return "", "", "", fmt.Errorf("%w: PLAIN field too long or not UTF-8", ErrMalformed)
		}
		if i > 0 && len(p) == 0 {
			return "", "", "", fmt.Errorf("%w: PLAIN with empty user name or password", ErrMalformed)
		}
	}
	return string(parts[0]), string(parts[1]), string(parts[2]), nil
}

// plainServer is PLAIN (RFC 4616).
type plainServer struct {
	ctx      context.Context
	accts    Authenticator
	step     int // 0: nothing seen; 1: challenge sent; 2: finished
	username string
	acct     store.Account
	ok       bool
}

func (s *plainServer) Mechanism() string              { return Plain }
func (s *plainServer) Username() string               { return s.username }
func (s *plainServer) Account() (store.Account, bool) { return s.acct, s.ok }

// Next implements go-sasl's Server. A nil response at the start means no
// initial response: PLAIN then sends an empty challenge (RFC 4616 §2 "the
// server sends an empty challenge").
func (s *plainServer) Next(response []byte) ([]byte, bool, error) {
	switch s.step {
	case 0:
		if response == nil {
			s.step = 1
			return []byte{}, false, nil
		}
	case 1:
	default:
		return nil, true, ErrDone
	}
	s.step = 2
	authzid, authcid, passwd, err := ParsePlain(response)
	if err != nil {
		return nil, true, err
	}
	s.username = authcid
	acct, err := s.accts.Authenticate(s.ctx, authcid, passwd)
	if err != nil {
		return nil, true, authFailure(err)
	}
	// RFC 4616 §2: an authzid other than the authcid asks to act as
	// someone else; tern has no proxy authorization, so refuse it. An
	// authzid naming the same account (any letter case) is fine.
	if authzid != "" && !sameAddress(authzid, authcid, acct) {
		return nil, true, fmt.Errorf("%w: authorization identity %q not allowed", ErrAuthFailed, authzid)
	}
	s.acct, s.ok = acct, true
	return nil, true, nil
}

// loginServer is the obsolete LOGIN mechanism (draft-murchison-sasl-login):
// challenges "Username:" and "Password:", the username possibly sent as
// an initial response.
type loginServer struct {
	ctx      context.Context
	accts    Authenticator
	step     int // 0: start; 1: asked username; 2: asked password; 3: finished
	username string
	acct     store.Account
	ok       bool
}

func (s *loginServer) Mechanism() string              { return Login }
func (s *loginServer) Username() string               { return s.username }
func (s *loginServer) Account() (store.Account, bool) { return s.acct, s.ok }

// Next implements go-sasl's Server.
func (s *loginServer) Next(response []byte) ([]byte, bool, error) {
	switch s.step {
	case 0:
		if response == nil {
			s.step = 1
			return []byte("Username:"), false, nil
		}
		return s.gotUsername(response)
	case 1:
		return s.gotUsername(response)
	case 2:
		s.step = 3
		if len(response) == 0 || len(response) > maxPlainField || !utf8.Valid(response) {
			return nil, true, fmt.Errorf("%w: bad LOGIN password", ErrMalformed)
		}
		acct, err := s.accts.Authenticate(s.ctx, s.username, string(response))
		if err != nil {
			return nil, true, authFailure(err)
		}
		s.acct, s.ok = acct, true
		return nil, true, nil
	}
	return nil, true, ErrDone
}

func (s *loginServer) gotUsername(response []byte) ([]byte, bool, error) {
	if len(response) == 0 || len(response) > maxPlainField || !utf8.Valid(response) || bytes.IndexByte(response, 0) >= 0 {
		s.step = 3
		return nil, true, fmt.Errorf("%w: bad LOGIN user name", ErrMalformed)
	}
	s.username = string(response)
	s.step = 2
	return []byte("Password:"), false, nil
}

// sameAddress reports whether an authorization identity names the account
// that authenticated.
func sameAddress(authzid, authcid string, acct store.Account) bool {
	return strings.EqualFold(authzid, authcid) || strings.EqualFold(authzid, acct.Address)
}
