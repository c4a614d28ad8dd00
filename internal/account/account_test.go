package account

import (
	"context"
	"errors"
	"testing"

	"github.com/tern-mail/tern/internal/store"
	"golang.org/x/crypto/bcrypt"
)

func TestPasswords(t *testing.T) {
	h := HashPassword("correct horse")
	if !VerifyPassword(h, "correct horse") || VerifyPassword(h, "wrong horse") {
		t.Fatal("argon2id verify")
	}
	bh, _ := bcrypt.GenerateFromPassword([]byte("imported!"), bcrypt.MinCost)
	if !VerifyPassword(string(bh), "imported!") || VerifyPassword(string(bh), "nope") {
		t.Fatal("bcrypt verify")
	}
	for _, bad := range []string{"", "$argon2id$", "$argon2id$v=19$m=0,t=1,p=1$AA$AA", "plain"} {
		if VerifyPassword(bad, "") {
			t.Errorf("accepted %q", bad)
		}
	}
}

func TestAuthenticate(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	st.AddDomain(ctx, "example.org")
	svc := New(st)
	if _, err := svc.Add(ctx, "alice@example.org", "short"); err == nil {
		t.Error("short password accepted")
	}
	a, err := svc.Add(ctx, "alice@example.org", "password1")
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ { // the second time through the cache
		got, err := svc.Authenticate(ctx, "Alice@example.org", "password1")
		if err != nil || got.ID != a.ID {
			t.Fatalf("auth: %v", err)
		}
	}
	if _, err := svc.Authenticate(ctx, "alice@example.org", "password2"); !errors.Is(err, ErrAuthFailed) {
		t.Error("wrong password accepted")
	}
	if _, err := svc.Authenticate(ctx, "nobody@example.org", "password1"); !errors.Is(err, ErrAuthFailed) {
		t.Error("unknown user accepted")
	}
	if err := svc.SetPassword(ctx, "alice@example.org", "password2"); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Authenticate(ctx, "alice@example.org", "password1"); !errors.Is(err, ErrAuthFailed) {
		t.Error("old password still accepted after change (cache?)")
	}
	_, creds, err := svc.ScramSHA256(ctx, "alice@example.org")
	if err != nil || creds.Iters != scramIters || len(creds.StoredKey) != 32 {
		t.Fatalf("scram: %+v %v", creds, err)
	}
}
