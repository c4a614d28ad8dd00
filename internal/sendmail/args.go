// Package sendmail implements `tern sendmail`: the command line of the
// traditional sendmail program (what cron, PHP and local scripts call),
// reading a message on standard input and putting it into tern's queue.
// ParseArgs is pure and fuzzed; Send does the submission through the
// Enqueuer and blob store it is given.
package sendmail

import (
	"errors"
	"fmt"
	"strings"
)

// Args is a parsed sendmail command line.
type Args struct {
	// ExtractRecipients (-t) reads recipients from To, Cc and Bcc.
	ExtractRecipients bool
	// IgnoreDots (-i, -oi) means a line with a single dot does not end
	// the message.
	IgnoreDots bool
	From       string // -f / -r: envelope sender
	// NullSender is set by -f '<>': the envelope sender is empty.
	NullSender bool
	FullName   string // -F: sender's full name for a missing From
	Notify     []string
	Ret        string // -R full|hdrs
	EnvID      string // -V
	Verbose    bool
	Recipients []string
}

// ErrUsage is returned for a command line tern cannot honour.
var ErrUsage = errors.New("sendmail: usage")

// optsWithArg take a value, either attached (-fme) or as the next
// argument (-f me).
const optsWithArg = "fFrBCNRVXhLOoq"

// ParseArgs parses sendmail-compatible arguments (without the program
// name). Unknown -o options and harmless flags are ignored; modes other
// than -bm (deliver) are refused.
func ParseArgs(args []string) (*Args, error) {
	a := &Args{}
	i := 0
	for ; i < len(args); i++ {
		arg := args[i]
		if arg == "--" {
			i++
			break
		}
		if len(arg) < 2 || arg[0] != '-' {
			break
		}
		opt, val := arg[1], arg[2:]
		// Flags without a value may be bundled: -ti is -t -i.
		for val != "" && isBareFlag(opt) {
			if err := a.option(opt, ""); err != nil {
				return nil, err
			}
			opt, val = val[0], val[1:]
		}
		if strings.IndexByte(optsWithArg, opt) >= 0 && val == "" && opt != 'q' {
			if i+1 >= len(args) {
				return nil, fmt.Errorf("%w: -%c needs a value", ErrUsage, opt)
			}
			i++
			val = args[i]
		}
		if err := a.option(opt, val); err != nil {
			return nil, err
		}
	}
	for _, r := range args[i:] {
		// "a@x, b@y" in one argument is accepted as sendmail does.
		for _, p := range strings.Split(r, ",") {
			if p = strings.TrimSpace(p); p != "" {
				a.Recipients = append(a.Recipients, p)
			}
		}
	}
	if !a.ExtractRecipients && len(a.Recipients) == 0 {
		return nil, fmt.Errorf("%w: no recipients (give addresses or -t)", ErrUsage)
	}
	return a, nil
}

// isBareFlag reports whether opt is a flag that takes no value, so that
// more flags may follow it in the same argument.
func isBareFlag(opt byte) bool {
	return strings.IndexByte("tivnmUG", opt) >= 0
}

func (a *Args) option(opt byte, val string) error {
	switch opt {
	case 't':
		a.ExtractRecipients = true
	case 'i':
		a.IgnoreDots = true
	case 'v':
		a.Verbose = true
	case 'f', 'r':
		// "-f '<>'" and "-f ''" both mean the null sender, which
		// is what a bounce-generating script asks for.
		a.From = strings.Trim(strings.TrimSpace(val), "<>")
		a.NullSender = a.From == ""
	case 'F':
		a.FullName = val
	case 'N':
		for _, n := range strings.Split(val, ",") {
			n = strings.ToUpper(strings.TrimSpace(n))
			switch n {
			case "NEVER", "SUCCESS", "FAILURE", "DELAY":
				a.Notify = append(a.Notify, n)
			default:
				return fmt.Errorf("%w: -N %q", ErrUsage, val)
			}
		}
	case 'R':
		switch strings.ToUpper(val) {
		case "FULL", "HDRS":
			a.Ret = strings.ToUpper(val)
		default:
			return fmt.Errorf("%w: -R %q", ErrUsage, val)
		}
	case 'V':
		a.EnvID = val
	case 'o':
		// -oi is -i; every other -oX (-odb, -oem, -oQ...) is ignored.
		if val == "i" {
			a.IgnoreDots = true
		}
	case 'b':
		if val != "m" {
			return fmt.Errorf("%w: mode -b%s is not supported (only -bm)", ErrUsage, val)
		}
	case 'B', 'C', 'X', 'h', 'L', 'O', 'q', 'm', 'n', 'U', 'e', 'G', 'd', 'A', 'D', 'M':
		// Accepted and ignored, as Postfix does.
	default:
		return fmt.Errorf("%w: unknown option -%c", ErrUsage, opt)
	}
	return nil
}
