// Command tern is a complete mail server in one binary. This file holds
// the command table; each command lives in its own file. No protocol
// logic lives here: only flags, configuration, wiring and signals.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
)

// command is one subcommand.
type command struct {
	usage string // arguments after the name
	help  string // one line
	run   func(ctx context.Context, env *env, args []string) error
}

// env is what commands read and write: standard streams, so tests can run
// commands in-process.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	stdinTerminal  bool
}

func commands() map[string]command {
	return map[string]command{
		"init":     {"-data DIR -domain DOMAIN [-hostname HOST] [-listen IP]", "create a data directory, configuration, certificate and DNS advice", runInit},
		"serve":    {"[-data DIR | -config FILE]", "run every configured listener until SIGTERM (SIGHUP reloads)", runServe},
		"dev":      {"[-data DIR]", "run a complete server on 127.0.0.1 with a demo account", runDev},
		"user":     {"add|del|list|passwd|quota|limits [ADDRESS] [BYTES | RCPTS PER-DAY]", "manage accounts (passwords are read from stdin)", runUser},
		"sendas":   {"add|del ACCOUNT ADDRESS|@DOMAIN, list ACCOUNT", "let an account send as other addresses", runSendAs},
		"domain":   {"add|del|list [DOMAIN]", "manage local domains", runDomain},
		"alias":    {"add ALIAS TARGET...|del ALIAS|list", "manage aliases (@domain is a catch-all)", runAlias},
		"import":   {"ADDRESS [-mailbox NAME] PATH", "import an mbox file or a Maildir", runImport},
		"export":   {"ADDRESS -o PATH [-format mbox|maildir] [-mailbox NAME]", "export an account or one mailbox", runExport},
		"queue":    {"list|show ID|retry ID|all|drop ID", "inspect and steer the outbound queue", runQueue},
		"dns":      {"DOMAIN", "print the DNS records to publish for a domain", runDNS},
		"dkim":     {"rotate DOMAIN", "add new DKIM selectors for a domain", runDKIM},
		"sendmail": {"[-t] [-i] [-f FROM] [RCPT...]", "send a message from stdin (sendmail compatible)", runSendmail},
		"version":  {"", "print the version", func(_ context.Context, e *env, _ []string) error { fmt.Fprintln(e.stdout, "tern", version); return nil }},
	}
}

const version = "0.1.0-dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	e := &env{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, stdinTerminal: isTerminal(os.Stdin)}
	args := os.Args[1:]
	// Installed as a link named sendmail, tern behaves as sendmail.
	if filepath.Base(os.Args[0]) == "sendmail" {
		args = append([]string{"sendmail"}, args...)
	}
	os.Exit(run(ctx, e, args))
}

// run dispatches a command line and returns the exit code.
func run(ctx context.Context, e *env, args []string) int {
	cmds := commands()
	if len(args) == 0 || args[0] == "-h" || args[0] == "-help" || args[0] == "--help" || args[0] == "help" {
		usage(e.stderr, cmds)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	c, ok := cmds[args[0]]
	if !ok {
		fmt.Fprintf(e.stderr, "tern: unknown command %q (tern -h lists them)\n", args[0])
		return 2
	}
	if err := c.run(ctx, e, args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(e.stderr, "tern %s: %s\nusage: tern %s %s\n", args[0], ue.msg, args[0], c.usage)
			return 2
		}
		fmt.Fprintf(e.stderr, "tern %s: %v\n", args[0], err)
		return 1
	}
	return 0
}

func usage(w io.Writer, cmds map[string]command) {
	fmt.Fprintln(w, "tern — a complete mail server in one binary\n\nusage: tern COMMAND [flags] [args]\n\ncommands:")
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-9s %s\n", n, cmds[n].help)
	}
	fmt.Fprintln(w, "\n\"tern COMMAND -h\" shows a command's flags. Admin commands find the data\ndirectory with -data DIR, -config FILE, or $TERN_DATA (default /var/lib/tern).")
}

// usageError is a mistake on the command line (exit code 2).
type usageError struct{ msg string }

func (u usageError) Error() string { return u.msg }

func usagef(format string, a ...any) error { return usageError{fmt.Sprintf(format, a...)} }

// parseFlags parses flags that may stand anywhere among the positional
// arguments ("user add -data DIR alice@x" and "user add alice@x -data DIR").
func parseFlags(fs *flag.FlagSet, e *env, args []string) ([]string, error) {
	fs.SetOutput(e.stderr)
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usageError{err.Error()}
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if rest[0] == "--" {
			return append(pos, rest[1:]...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

func trimLine(s string) string { return strings.TrimRight(s, "\r\n") }
