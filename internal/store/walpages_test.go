package store

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
)

// TestWALPagesPerWrite reports how many WAL frames each kind of IMAP write
// adds (TERN_WALPAGES=1): the pages a commit writes are the writer's main
// cost under load.
func TestWALPagesPerWrite(t *testing.T) {
	if os.Getenv("TERN_WALPAGES") == "" {
		t.Skip("set TERN_WALPAGES=1 to measure")
	}
	s := openTest(t)
	ctx := context.Background()
	a := mustAccount(t, s, "a@example.org")
	for i := 0; i < 500; i++ {
		appendMsg(t, s, a, "INBOX", msg(fmt.Sprint("n", i))+strings.Repeat("body text line\r\n", i%200))
	}
	mb, _ := s.MailboxByName(ctx, a.ID, "INBOX")
	frames := func(mode string) int {
		var busy, log, done int
		if err := s.wdb.QueryRowContext(ctx, "PRAGMA wal_checkpoint("+mode+")").Scan(&busy, &log, &done); err != nil {
			t.Fatal(err)
		}
		return log
	}
	measure := func(name string, fn func()) {
		frames("TRUNCATE")
		fn()
		t.Logf("%-22s %d frames", name, frames("PASSIVE"))
	}
	measure("STORE +FLAGS", func() {
		s.UpdateFlags(ctx, mb.ID, FlagUpdate{UIDs: []uint32{250}, Op: FlagsAdd, Flags: []string{`\Flagged`}})
	})
	measure("STORE +FLAGS \\Deleted", func() {
		s.UpdateFlags(ctx, mb.ID, FlagUpdate{UIDs: []uint32{250}, Op: FlagsAdd, Flags: []string{`\Deleted`}})
	})
	measure("EXPUNGE", func() { s.Expunge(ctx, mb.ID, nil) })
	measure("APPEND", func() { appendMsg(t, s, a, "INBOX", msg("new")) })
}
