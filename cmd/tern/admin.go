package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/tern-mail/tern/internal/account"
	"github.com/tern-mail/tern/internal/config"
	"github.com/tern-mail/tern/internal/dkim"
	"github.com/tern-mail/tern/internal/store"
	"golang.org/x/term"
)

// location is where a command finds its data: -data DIR or -config FILE.
type location struct{ data, config string }

func (l *location) register(fs *flag.FlagSet) {
	fs.StringVar(&l.data, "data", "", "data directory (default $TERN_DATA or /var/lib/tern)")
	fs.StringVar(&l.config, "config", "", "configuration file (default DATA/tern.toml)")
}

// load reads the configuration the location names.
func (l *location) load() (*config.Config, error) {
	path := l.config
	if path == "" {
		dir := l.data
		if dir == "" {
			dir = os.Getenv("TERN_DATA")
		}
		if dir == "" {
			dir = "/var/lib/tern"
		}
		path = filepath.Join(dir, "tern.toml")
	}
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no configuration at %s (run tern init, or give -data/-config)", path)
	}
	cfg, err := config.Load(path)
	if err != nil {
		return nil, err
	}
	if l.data != "" && l.config != "" {
		cfg.Data = l.data
	}
	return cfg, nil
}

// open opens the store of a data directory for an admin command.
func (l *location) open(ctx context.Context) (*config.Config, *store.Store, error) {
	cfg, err := l.load()
	if err != nil {
		return nil, nil, err
	}
	st, err := store.Open(ctx, cfg.Data, store.Options{})
	return cfg, st, err
}

// adminArgs parses the common flags of an admin command and opens the store.
func adminArgs(ctx context.Context, e *env, name string, args []string) ([]string, *config.Config, *store.Store, error) {
	fs := flag.NewFlagSet("tern "+name, flag.ContinueOnError)
	var loc location
	loc.register(fs)
	pos, err := parseFlags(fs, e, args)
	if err != nil {
		return nil, nil, nil, err
	}
	if len(pos) == 0 {
		return nil, nil, nil, usagef("missing subcommand")
	}
	cfg, st, err := loc.open(ctx)
	return pos, cfg, st, err
}

func wantArgs(pos []string, n int, what string) error {
	if len(pos) != n {
		return usagef("%s: want %s", pos[0], what)
	}
	return nil
}

func runUser(ctx context.Context, e *env, args []string) error {
	pos, _, st, err := adminArgs(ctx, e, "user", args)
	if err != nil {
		return err
	}
	defer st.Close()
	svc := account.New(st)
	switch pos[0] {
	case "add", "passwd":
		if err := wantArgs(pos, 2, "ADDRESS"); err != nil {
			return err
		}
		pw, err := readPassword(e)
		if err != nil {
			return err
		}
		if pos[0] == "add" {
			if _, err := svc.Add(ctx, pos[1], pw); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "added %s\n", pos[1])
			return nil
		}
		return svc.SetPassword(ctx, pos[1], pw)
	case "del":
		if err := wantArgs(pos, 2, "ADDRESS"); err != nil {
			return err
		}
		return st.DeleteAccount(ctx, pos[1])
	case "quota":
		if err := wantArgs(pos, 3, "ADDRESS BYTES (0 = unlimited; suffixes K, M, G)"); err != nil {
			return err
		}
		n, err := parseBytes(pos[2])
		if err != nil {
			return usagef("%v", err)
		}
		return st.SetQuota(ctx, pos[1], n)
	case "limits":
		if err := wantArgs(pos, 4, "ADDRESS RCPTS-PER-MESSAGE MESSAGES-PER-DAY (0 = the server's default)"); err != nil {
			return err
		}
		rcpts, err1 := strconv.Atoi(pos[2])
		perDay, err2 := strconv.Atoi(pos[3])
		if err1 != nil || err2 != nil {
			return usagef("limits: want two numbers")
		}
		return st.SetSendLimits(ctx, pos[1], rcpts, perDay)
	case "list":
		accts, err := st.Accounts(ctx)
		if err != nil {
			return err
		}
		for _, a := range accts {
			quota := "unlimited"
			if a.QuotaBytes > 0 {
				quota = strconv.FormatInt(a.QuotaBytes, 10)
			}
			limits := ""
			if a.MaxRecipients > 0 || a.MaxPerDay > 0 {
				limits = fmt.Sprintf("\tlimits %d rcpts %d/day", a.MaxRecipients, a.MaxPerDay)
			}
			fmt.Fprintf(e.stdout, "%s\tused %d\tquota %s%s\n", a.Address, a.UsedBytes, quota, limits)
		}
		return nil
	}
	return usagef("unknown subcommand %q", pos[0])
}

func parseBytes(s string) (int64, error) {
	mult := int64(1)
	switch {
	case strings.HasSuffix(s, "K"):
		mult, s = 1<<10, strings.TrimSuffix(s, "K")
	case strings.HasSuffix(s, "M"):
		mult, s = 1<<20, strings.TrimSuffix(s, "M")
	case strings.HasSuffix(s, "G"):
		mult, s = 1<<30, strings.TrimSuffix(s, "G")
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("bad size %q", s)
	}
	return n * mult, nil
}

// readPassword reads a password: one line from stdin when it is not a
// terminal (scripts pipe it), otherwise prompted twice without echo.
func readPassword(e *env) (string, error) {
	if !e.stdinTerminal {
		line, err := bufio.NewReader(e.stdin).ReadString('\n')
		if err != nil && line == "" {
			return "", errors.New("no password on stdin")
		}
		return trimLine(line), nil
	}
	fd := int(os.Stdin.Fd())
	fmt.Fprint(e.stderr, "Password: ")
	a, err := term.ReadPassword(fd)
	fmt.Fprintln(e.stderr)
	if err != nil {
		return "", err
	}
	fmt.Fprint(e.stderr, "Again: ")
	b, err := term.ReadPassword(fd)
	fmt.Fprintln(e.stderr)
	if err != nil {
		return "", err
	}
	if string(a) != string(b) {
		return "", errors.New("passwords differ")
	}
	return string(a), nil
}

func runDomain(ctx context.Context, e *env, args []string) error {
	pos, cfg, st, err := adminArgs(ctx, e, "domain", args)
	if err != nil {
		return err
	}
	defer st.Close()
	switch pos[0] {
	case "add":
		if err := wantArgs(pos, 2, "DOMAIN"); err != nil {
			return err
		}
		if err := st.AddDomain(ctx, pos[1]); err != nil {
			return err
		}
		if err := dkim.New(cfg.Data).Ensure(strings.ToLower(pos[1])); err != nil {
			return fmt.Errorf("creating DKIM keys: %w", err)
		}
		fmt.Fprintf(e.stdout, "added %s; publish these records:\n\n", pos[1])
		return printDNS(ctx, e, cfg, strings.ToLower(pos[1]))
	case "del":
		if err := wantArgs(pos, 2, "DOMAIN"); err != nil {
			return err
		}
		return st.DeleteDomain(ctx, pos[1])
	case "list":
		ds, err := st.Domains(ctx)
		for _, d := range ds {
			fmt.Fprintln(e.stdout, d)
		}
		return err
	}
	return usagef("unknown subcommand %q", pos[0])
}

func runAlias(ctx context.Context, e *env, args []string) error {
	pos, _, st, err := adminArgs(ctx, e, "alias", args)
	if err != nil {
		return err
	}
	defer st.Close()
	switch pos[0] {
	case "add":
		if len(pos) < 3 {
			return usagef("add: want ALIAS TARGET...")
		}
		return st.AddAlias(ctx, pos[1], pos[2:])
	case "del":
		if err := wantArgs(pos, 2, "ALIAS"); err != nil {
			return err
		}
		return st.DeleteAlias(ctx, pos[1])
	case "list":
		as, err := st.Aliases(ctx)
		for _, a := range as {
			fmt.Fprintf(e.stdout, "%s\t%s\n", a.Address, strings.Join(a.Targets, " "))
		}
		return err
	}
	return usagef("unknown subcommand %q", pos[0])
}

// runSendAs manages the addresses an account may send as besides its
// own and its aliases (a shared role address, or "@domain" for an
// application that sends for a whole domain).
func runSendAs(ctx context.Context, e *env, args []string) error {
	pos, _, st, err := adminArgs(ctx, e, "sendas", args)
	if err != nil {
		return err
	}
	defer st.Close()
	switch pos[0] {
	case "add", "del":
		if err := wantArgs(pos, 3, "ACCOUNT ADDRESS|@DOMAIN"); err != nil {
			return err
		}
		if pos[0] == "add" {
			return st.AddSendAs(ctx, pos[1], pos[2])
		}
		return st.DeleteSendAs(ctx, pos[1], pos[2])
	case "list":
		if err := wantArgs(pos, 2, "ACCOUNT"); err != nil {
			return err
		}
		a, err := st.AccountByAddress(ctx, pos[1])
		if err != nil {
			return err
		}
		grants, err := st.SendAs(ctx, a.ID)
		for _, g := range grants {
			fmt.Fprintln(e.stdout, g)
		}
		return err
	}
	return usagef("unknown subcommand %q", pos[0])
}

func runDKIM(ctx context.Context, e *env, args []string) error {
	pos, cfg, st, err := adminArgs(ctx, e, "dkim", args)
	if err != nil {
		return err
	}
	defer st.Close()
	if pos[0] != "rotate" || len(pos) != 2 {
		return usagef("want: rotate DOMAIN")
	}
	sels, err := dkim.New(cfg.Data).Rotate(strings.ToLower(pos[1]))
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "new selectors %s; the old ones keep verifying. Publish:\n\n", strings.Join(sels, ", "))
	return printDNS(ctx, e, cfg, strings.ToLower(pos[1]))
}
