package transfer

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
)

const mboxExt = ".mbox"

// mboxFile is the path, relative to the export directory, of the mbox
// file of a mailbox: "Folder/Sub" is "Folder/Sub.mbox".
func mboxFile(mailbox string) string {
	parts := strings.Split(mailbox, "/")
	for i, p := range parts {
		parts[i] = escapeComponent(p)
	}
	return filepath.Join(parts...) + mboxExt
}

// escapeComponent writes bytes that file systems or this layout reserve
// as %XX: a leading '.', the '.' of a trailing ".mbox" (a file "A.mbox"
// and a directory "A.mbox" must not meet), and characters that are
// special on some platforms.
func escapeComponent(s string) string {
	var b strings.Builder
	dotMbox := strings.HasSuffix(s, mboxExt)
	for i := 0; i < len(s); i++ {
		c := s[i]
		special := c < 0x20 || c == 0x7f || strings.IndexByte(`%\:*?"<>|`, c) >= 0
		if special || (c == '.' && i == 0) || (dotMbox && c == '.' && i == len(s)-len(mboxExt)) {
			fmt.Fprintf(&b, "%%%02X", c)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// unescapeComponent undoes escapeComponent; stray '%' are kept.
func unescapeComponent(s string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) {
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

// mailboxOfFile is the mailbox name of an mbox file found at rel (a
// slash-separated path relative to the import directory): ".mbox" is
// removed from the file and ".sbd" (Thunderbird) from the directories.
func mailboxOfFile(rel string) string {
	parts := strings.Split(filepath.ToSlash(rel), "/")
	last := len(parts) - 1
	for i, p := range parts {
		if i == last {
			p = strings.TrimSuffix(p, mboxExt)
		} else {
			p = strings.TrimSuffix(p, ".sbd")
		}
		parts[i] = unescapeComponent(p)
	}
	return strings.Join(parts, "/")
}
