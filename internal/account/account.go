// Package account is the door to users' credentials: it hashes passwords
// (argon2id, verifying imported bcrypt hashes too), derives SCRAM-SHA-256
// credentials, and authenticates logins for every protocol. It stores
// through internal/store and never speaks a protocol.
package account

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tern-mail/tern/internal/store"
	"github.com/xdg-go/scram"
	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// ErrAuthFailed is returned for any failed authentication; the reason is
// deliberately not told apart (unknown user, wrong password).
var ErrAuthFailed = errors.New("authentication failed")

// argon2id parameters: OWASP's recommended minimum (19 MiB, 2 passes), a
// fair balance for a mail server where clients log in often.
const (
	argonMemory  = 19 * 1024
	argonTime    = 2
	argonThreads = 1
	argonKeyLen  = 32
	scramIters   = 4096
	cacheTTL     = 10 * time.Minute
)

// Service authenticates users and manages their credentials.
type Service struct {
	st *store.Store

	// A verified-login cache: a client that logs in every minute should
	// not pay for argon2 every time. Keys are an HMAC (with a per-process
	// key) of the stored hash and the password, so the cache holds no
	// password and a password change invalidates it.
	mu       sync.Mutex
	cacheKey [32]byte
	cache    map[[32]byte]time.Time
}

// New returns a Service over a store.
func New(st *store.Store) *Service {
	s := &Service{st: st, cache: map[[32]byte]time.Time{}}
	rand.Read(s.cacheKey[:])
	return s
}

// Store is the underlying store.
func (s *Service) Store() *store.Store { return s.st }

// HashPassword returns an argon2id PHC string for a password.
func HashPassword(password string) string {
	salt := make([]byte, 16)
	rand.Read(salt)
	key := argon2.IDKey([]byte(password), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemory, argonTime, argonThreads, b64.EncodeToString(salt), b64.EncodeToString(key))
}

// VerifyPassword checks a password against an argon2id PHC string or a
// bcrypt hash ($2a$, $2b$, $2y$, as imported from other servers).
func VerifyPassword(hash, password string) bool {
	if strings.HasPrefix(hash, "$2") {
		return bcrypt.CompareHashAndPassword([]byte(hash), []byte(password)) == nil
	}
	parts := strings.Split(hash, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return false
	}
	var m, t uint32
	var p uint8
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil || m == 0 || m > 1<<22 || t == 0 || t > 64 || p == 0 {
		return false
	}
	b64 := base64.RawStdEncoding
	salt, err1 := b64.DecodeString(parts[4])
	want, err2 := b64.DecodeString(parts[5])
	if err1 != nil || err2 != nil || len(want) == 0 || len(want) > 128 {
		return false
	}
	got := argon2.IDKey([]byte(password), salt, t, m, p, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1
}

// ScramCredentials derives the SCRAM-SHA-256 stored credentials for a
// password, encoded for the store.
func ScramCredentials(password string) (string, error) {
	client, err := scram.SHA256.NewClient("", password, "")
	if err != nil {
		return "", err
	}
	salt := make([]byte, 16)
	rand.Read(salt)
	c := client.GetStoredCredentials(scram.KeyFactors{Salt: string(salt), Iters: scramIters})
	b64 := base64.StdEncoding
	return fmt.Sprintf("SCRAM-SHA-256$%d$%s$%s$%s", c.Iters, b64.EncodeToString(salt),
		b64.EncodeToString(c.StoredKey), b64.EncodeToString(c.ServerKey)), nil
}

// ParseScram decodes what ScramCredentials encoded.
func ParseScram(s string) (scram.StoredCredentials, error) {
	parts := strings.Split(s, "$")
	if len(parts) != 5 || parts[0] != "SCRAM-SHA-256" {
		return scram.StoredCredentials{}, errors.New("no SCRAM-SHA-256 credentials")
	}
	iters, err := strconv.Atoi(parts[1])
	if err != nil || iters <= 0 {
		return scram.StoredCredentials{}, errors.New("bad SCRAM iteration count")
	}
	b64 := base64.StdEncoding
	salt, err1 := b64.DecodeString(parts[2])
	stored, err2 := b64.DecodeString(parts[3])
	server, err3 := b64.DecodeString(parts[4])
	if err := errors.Join(err1, err2, err3); err != nil {
		return scram.StoredCredentials{}, err
	}
	return scram.StoredCredentials{KeyFactors: scram.KeyFactors{Salt: string(salt), Iters: iters}, StoredKey: stored, ServerKey: server}, nil
}

// Add creates an account with a password.
func (s *Service) Add(ctx context.Context, address, password string) (store.Account, error) {
	if err := checkPassword(password); err != nil {
		return store.Account{}, err
	}
	sc, err := ScramCredentials(password)
	if err != nil {
		return store.Account{}, err
	}
	return s.st.AddAccount(ctx, address, HashPassword(password), sc)
}

// SetPassword replaces an account's password.
func (s *Service) SetPassword(ctx context.Context, address, password string) error {
	if err := checkPassword(password); err != nil {
		return err
	}
	sc, err := ScramCredentials(password)
	if err != nil {
		return err
	}
	return s.st.SetPassword(ctx, address, HashPassword(password), sc)
}

func checkPassword(p string) error {
	switch {
	case len(p) < 8:
		return errors.New("password too short: at least 8 characters")
	case len(p) > 1024:
		return errors.New("password too long")
	case strings.ContainsAny(p, "\x00\r\n"):
		return errors.New("password contains NUL or line breaks")
	}
	return nil
}

// Authenticate checks a username (the full address) and password.
func (s *Service) Authenticate(ctx context.Context, username, password string) (store.Account, error) {
	acct, err := s.st.AccountByAddress(ctx, username)
	if errors.Is(err, store.ErrNotFound) {
		// Spend comparable time so that unknown users are not revealed
		// by timing.
		VerifyPassword(dummyHash, password)
		return store.Account{}, ErrAuthFailed
	} else if err != nil {
		return store.Account{}, err
	}
	key := s.cacheEntry(acct.PasswordHash, password)
	s.mu.Lock()
	exp, ok := s.cache[key]
	s.mu.Unlock()
	if ok && time.Now().Before(exp) {
		return acct, nil
	}
	if !VerifyPassword(acct.PasswordHash, password) {
		return store.Account{}, ErrAuthFailed
	}
	s.mu.Lock()
	if len(s.cache) > 100000 {
		clear(s.cache)
	}
	s.cache[key] = time.Now().Add(cacheTTL)
	s.mu.Unlock()
	return acct, nil
}

var dummyHash = HashPassword("not a password of anyone")

func (s *Service) cacheEntry(hash, password string) [32]byte {
	m := hmac.New(sha256.New, s.cacheKey[:])
	m.Write([]byte(hash))
	m.Write([]byte{0})
	m.Write([]byte(password))
	var k [32]byte
	copy(k[:], m.Sum(nil))
	return k
}

// ScramSHA256 returns an account and its SCRAM-SHA-256 credentials for a
// SASL exchange.
func (s *Service) ScramSHA256(ctx context.Context, username string) (store.Account, scram.StoredCredentials, error) {
	acct, err := s.st.AccountByAddress(ctx, username)
	if err != nil {
		return store.Account{}, scram.StoredCredentials{}, ErrAuthFailed
	}
	c, err := ParseScram(acct.ScramSHA256)
	if err != nil {
		return store.Account{}, scram.StoredCredentials{}, ErrAuthFailed
	}
	return acct, c, nil
}
