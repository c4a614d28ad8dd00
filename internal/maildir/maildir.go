// Package maildir reads and writes Maildir directories with Maildir++
// subfolders, as Dovecot, Courier and mbsync keep them.
//
// A folder is a directory holding cur/, new/ and tmp/. The root is the
// INBOX (Folder name ""); a subfolder "Folder/Sub" lives in the Maildir++
// directory ".Folder.Sub" below the root, its components in modified UTF-7
// (RFC 3501 §5.1.3, as Dovecot writes them), with ".", "/" and "\" inside a
// component escaped as \2e, \2f and \5c (Dovecot's listescape convention).
//
// Flags live in the info suffix of a file name, ":2," followed by letters
// in ASCII order: D draft, F flagged, P passed, R replied, S seen, T
// trashed. They map to \Draft, \Flagged, \Answered, \Seen and \Deleted; P
// has no IMAP flag and is ignored. Lower-case letters are Dovecot keywords,
// numbered by the folder's dovecot-keywords file; a letter not listed there
// is ignored. The Writer writes that file for the first 26 keywords of a
// folder; further keywords are not kept.
//
// The Reader yields messages in file-name order (the names begin with the
// delivery time, so this is delivery order); the internal date of a message
// is the modification time of its file, which the Writer sets.
//
// The Writer follows the Maildir delivery protocol: write into tmp/, fsync,
// rename into cur/ under a name carrying the size and the flags. It does
// so for batches of messages, fsyncing them in parallel; Close fsyncs the
// directories the names were added to.
package maildir

import (
	"bufio"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/tern-mail/tern/internal/imap"
)

// KeywordsFile is the Dovecot file mapping keyword letters to names.
const KeywordsFile = "dovecot-keywords"

// infoFlags maps Maildir info letters to IMAP system flags.
var infoFlags = [...]struct {
	letter byte
	flag   string
}{
	{'D', `\Draft`},
	{'F', `\Flagged`},
	{'R', `\Answered`},
	{'S', `\Seen`},
	{'T', `\Deleted`},
}

// ParseInfo returns the IMAP flags of a file name's info suffix
// (":2,FS..."; ";2," is accepted too, as some platforms cannot use ':').
// keywords maps 'a'+i to keyword i; it may be nil.
func ParseInfo(name string, keywords []string) []string {
	i := strings.LastIndex(name, ":2,")
	if i < 0 {
		i = strings.LastIndex(name, ";2,")
	}
	if i < 0 {
		return nil
	}
	var flags []string
	for _, c := range []byte(name[i+3:]) {
		switch {
		case c >= 'a' && c <= 'z':
			if k := int(c - 'a'); k < len(keywords) && keywords[k] != "" {
				flags = appendOnce(flags, keywords[k])
			}
		default:
			for _, f := range infoFlags {
				if f.letter == c {
					flags = appendOnce(flags, f.flag)
				}
			}
		}
	}
	return flags
}

func appendOnce(list []string, s string) []string {
	for _, x := range list {
		if x == s {
			return list
		}
	}
	return append(list, s)
}

// baseName is a file name without its info suffix: the unique part that
// orders messages.
func baseName(name string) string {
	if i := strings.LastIndex(name, ":2,"); i >= 0 {
		return name[:i]
	}
	if i := strings.LastIndex(name, ";2,"); i >= 0 {
		return name[:i]
	}
	return name
}

// FolderDir is the Maildir++ directory name (relative to the root) of a
// folder name; "" is the root itself.
func FolderDir(name string) string {
	if name == "" {
		return ""
	}
	parts := strings.Split(name, "/")
	for i, p := range parts {
		p = imap.EncodeMUTF7(p)
		p = strings.NewReplacer(`\`, `\5c`, ".", `\2e`, "/", `\2f`).Replace(p)
		parts[i] = p
	}
	return "." + strings.Join(parts, ".")
}

// FolderName is the folder name of a Maildir++ directory name (".A.B" is
// "A/B"); ok is false when dir is not a Maildir++ folder name.
func FolderName(dir string) (name string, ok bool) {
	if len(dir) < 2 || dir[0] != '.' || dir == ".." {
		return "", false
	}
	parts := strings.Split(dir[1:], ".")
	for i, p := range parts {
		if p == "" {
			return "", false
		}
		p = unescape(p)
		if d, err := imap.DecodeMUTF7(p); err == nil {
			p = d
		}
		parts[i] = p
	}
	return strings.Join(parts, "/"), true
}

// unescape undoes Dovecot's listescape \xx hex escapes.
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+2 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+3], 16, 8); err == nil {
				b.WriteByte(byte(v))
				i += 2
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// Folder is one Maildir folder.
type Folder struct {
	// Name is the mailbox name, "" for the root (INBOX).
	Name string
	// Dir is the directory holding cur/, new/ and tmp/.
	Dir string
}

// IsMaildir reports whether dir holds a cur/ directory.
func IsMaildir(dir string) bool {
	st, err := os.Stat(filepath.Join(dir, "cur"))
	return err == nil && st.IsDir()
}

// Folders lists the folders of the Maildir at root: the root first if it
// is a Maildir itself, then the Maildir++ subfolders by name.
func Folders(root string) ([]Folder, error) {
	entries, err := os.ReadDir(root)
	if err != nil {
		return nil, err
	}
	var out []Folder
	if IsMaildir(root) {
		out = append(out, Folder{Name: "", Dir: root})
	}
	var subs []Folder
	for _, e := range entries {
		name, ok := FolderName(e.Name())
		if !ok || !e.IsDir() {
			continue
		}
		dir := filepath.Join(root, e.Name())
		if IsMaildir(dir) {
			subs = append(subs, Folder{Name: name, Dir: dir})
		}
	}
	sort.Slice(subs, func(i, j int) bool { return subs[i].Name < subs[j].Name })
	return append(out, subs...), nil
}

// Keywords reads the folder's dovecot-keywords file: index i is the
// keyword of letter 'a'+i. A missing file means no keywords.
func (f Folder) Keywords() ([]string, error) {
	file, err := os.Open(filepath.Join(f.Dir, KeywordsFile))
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer file.Close()
	var kw []string
	sc := bufio.NewScanner(file)
	for sc.Scan() {
		idx, name, ok := strings.Cut(sc.Text(), " ")
		n, err := strconv.Atoi(idx)
		if !ok || err != nil || n < 0 || n >= 26 || name == "" {
			continue
		}
		for len(kw) <= n {
			kw = append(kw, "")
		}
		kw[n] = name
	}
	return kw, sc.Err()
}
