package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/tern-mail/tern/internal/config"
	"github.com/tern-mail/tern/internal/dkim"
	"github.com/tern-mail/tern/internal/dns"
	"github.com/tern-mail/tern/internal/store"
	"github.com/tern-mail/tern/internal/tlsconf"
)

func runInit(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("tern init", flag.ContinueOnError)
	data := fs.String("data", "", "data directory to create (required)")
	domain := fs.String("domain", "", "first mail domain, e.g. example.org (required)")
	hostname := fs.String("hostname", "", "public name of this server (default mail.DOMAIN)")
	listen := fs.String("listen", "", "IP address to listen on (default all addresses)")
	if _, err := parseFlags(fs, e, args); err != nil {
		return err
	}
	if *data == "" || *domain == "" {
		return usagef("-data and -domain are required")
	}
	if *hostname == "" {
		*hostname = "mail." + *domain
	}
	if *listen != "" && net.ParseIP(*listen) == nil {
		return usagef("-listen %q is not an IP address", *listen)
	}
	cfgPath := filepath.Join(*data, "tern.toml")
	if _, err := os.Stat(cfgPath); err == nil {
		return fmt.Errorf("%s exists already: not overwriting", cfgPath)
	}
	cfg, err := initDataDir(ctx, *data, *domain, config.Example(*hostname, *listen))
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "created %s for %s (server %s)\n", *data, *domain, *hostname)
	fmt.Fprintf(e.stdout, "next: tern user add -data %s postmaster@%s; tern serve -data %s\n\npublish these DNS records:\n\n", *data, *domain, *data)
	return printDNS(ctx, e, cfg, strings.ToLower(*domain))
}

// initDataDir creates a data directory: configuration, certificate,
// database with the first domain, DKIM keys.
func initDataDir(ctx context.Context, dir, domain, cfgText string) (*config.Config, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	cfg, err := config.Parse([]byte(cfgText))
	if err != nil {
		return nil, fmt.Errorf("internal: generated config: %w", err)
	}
	cfg.Data, _ = filepath.Abs(dir)
	names := []string{cfg.Hostname}
	if cfg.Hostname == "localhost" {
		names = append(names, "127.0.0.1", "::1")
	}
	if err := tlsconf.SelfSigned(cfg.Path(cfg.TLS.Cert), cfg.Path(cfg.TLS.Key), names...); err != nil {
		return nil, err
	}
	st, err := store.Open(ctx, dir, store.Options{})
	if err != nil {
		return nil, err
	}
	defer st.Close()
	if err := st.AddDomain(ctx, domain); err != nil && !errors.Is(err, store.ErrExists) {
		return nil, err
	}
	if err := dkim.New(cfg.Data).Ensure(strings.ToLower(domain)); err != nil {
		return nil, err
	}
	// The config goes last: its presence marks a complete data directory.
	if err := os.WriteFile(filepath.Join(dir, "tern.toml"), []byte(cfgText), 0o600); err != nil {
		return nil, err
	}
	return cfg, nil
}

func runDNS(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("tern dns", flag.ContinueOnError)
	var loc location
	loc.register(fs)
	pos, err := parseFlags(fs, e, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("want DOMAIN")
	}
	cfg, err := loc.load()
	if err != nil {
		return err
	}
	return printDNS(ctx, e, cfg, strings.ToLower(pos[0]))
}

// printDNS prints a domain's records as a zone file fragment.
func printDNS(_ context.Context, e *env, cfg *config.Config, domain string) error {
	keys, err := dkim.New(cfg.Data).Records(domain)
	if err != nil {
		return err
	}
	fmt.Fprint(e.stdout, dns.Zone(dns.Records(dns.RecordsOptions{Domain: domain, Hostname: cfg.Hostname, DKIM: keys})))
	return nil
}
