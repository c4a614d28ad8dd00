package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/tern-mail/tern/internal/account"
	"github.com/tern-mail/tern/internal/config"
	"github.com/tern-mail/tern/internal/store"
)

const (
	devDomain   = "example.test"
	devUser     = "demo@example.test"
	devPassword = "demo-password"
)

// devConfig is tern.toml for `tern dev`: loopback, high ports.
const devConfig = `hostname = "localhost"

[tls]
cert = "tls/cert.pem"
key = "tls/key.pem"

[smtp]
listen = ["127.0.0.1:2525"]

[submission]
listen = ["127.0.0.1:2587"]
listen_tls = ["127.0.0.1:2465"]

[imap]
listen = ["127.0.0.1:2143"]
listen_tls = ["127.0.0.1:2993"]

[pop3]
listen = ["127.0.0.1:2110"]
listen_tls = ["127.0.0.1:2995"]

[http]
listen = ["127.0.0.1:8080"]
`

func runDev(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("tern dev", flag.ContinueOnError)
	data := fs.String("data", "", "data directory (default: a new temporary directory, removed at exit)")
	if _, err := parseFlags(fs, e, args); err != nil {
		return err
	}
	dir := *data
	if dir == "" {
		tmp, err := os.MkdirTemp("", "tern-dev-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		dir = tmp
	}
	cfgPath := filepath.Join(dir, "tern.toml")
	if _, err := os.Stat(cfgPath); errors.Is(err, os.ErrNotExist) {
		if _, err := initDataDir(ctx, dir, devDomain, devConfig); err != nil {
			return err
		}
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return err
	}
	cfg.Dev = true
	if err := ensureDemo(ctx, cfg); err != nil {
		return err
	}
	srv, err := start(ctx, cfg, e.stderr)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "tern dev is running (data in %s)\n\n", cfg.Data)
	for _, p := range srv.ports {
		fmt.Fprintf(e.stdout, "  %s\n", p)
	}
	fmt.Fprintf(e.stdout, "\n  user:     %s\n  password: %s\n  domain:   %s (add users with: tern user add -data %s NAME@%s)\n\n", devUser, devPassword, devDomain, cfg.Data, devDomain)
	fmt.Fprintf(e.stdout, "Plaintext login is allowed on loopback; the TLS ports use a self-signed certificate.\nTry: swaks --server 127.0.0.1:2525 --to %s\nCtrl-C stops.\n", devUser)
	srv.waitSignals(ctx, func() error { return srv.reload(cfg) })
	return srv.stop()
}

// ensureDemo creates the demo account once.
func ensureDemo(ctx context.Context, cfg *config.Config) error {
	st, err := store.Open(ctx, cfg.Data, store.Options{})
	if err != nil {
		return err
	}
	defer st.Close()
	if err := st.AddDomain(ctx, devDomain); err != nil && !errors.Is(err, store.ErrExists) {
		return err
	}
	if _, err := account.New(st).Add(ctx, devUser, devPassword); err != nil && !errors.Is(err, store.ErrExists) {
		return err
	}
	return nil
}
