package store

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
)

// openBench opens a store for a benchmark, with the domain example.org.
func openBench(b *testing.B) (*Store, context.Context) {
	s, err := Open(context.Background(), b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	ctx := context.Background()
	s.AddDomain(ctx, "example.org")
	return s, ctx
}

// BenchmarkAppendParallel measures durable deliveries per second with many
// concurrent writers sharing commits.
func BenchmarkAppendParallel(b *testing.B) {
	s, ctx := openBench(b)
	a, _ := s.AddAccount(ctx, "a@example.org", "h", "")
	inbox, _ := s.MailboxByName(ctx, a.ID, "INBOX")
	body := msg("bench") + strings.Repeat("x", 2000) + "\r\n"
	b.SetParallelism(10)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.Append(ctx, AppendRequest{AccountID: a.ID, MailboxID: inbox.ID, Body: strings.NewReader(body)}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	batches, writes, busy := s.WriterStats()
	if batches > 0 {
		b.ReportMetric(float64(writes)/float64(batches), "writes/commit")
		b.ReportMetric(float64(busy.Microseconds())/float64(batches), "µs/commit")
	}
}

// BenchmarkIMAPWrites runs the writes of one loop of bench/imap's mix
// (STORE +FLAGS, STORE -FLAGS, APPEND, UID STORE \Deleted, EXPUNGE) per
// op, from 10 accounts at once, so that a change to the write path can be
// compared without the network and the other server in the way.
func BenchmarkIMAPWrites(b *testing.B) {
	s, ctx := openBench(b)
	const users = 10
	type user struct {
		acct, mbox int64
	}
	var us []user
	for i := 0; i < users; i++ {
		a, err := s.AddAccount(ctx, fmt.Sprintf("u%d@example.org", i), "h", "")
		if err != nil {
			b.Fatal(err)
		}
		inbox, _ := s.MailboxByName(ctx, a.ID, "INBOX")
		for j := 0; j < 200; j++ {
			body := msg(fmt.Sprint("m", j)) + strings.Repeat("body line\r\n", 50+j%100)
			if _, err := s.Append(ctx, AppendRequest{AccountID: a.ID, MailboxID: inbox.ID, Body: strings.NewReader(body), Flags: []string{`\Seen`}}); err != nil {
				b.Fatal(err)
			}
		}
		us = append(us, user{a.ID, inbox.ID})
	}
	var next atomic.Int64
	b.SetParallelism(users / runtime.GOMAXPROCS(0))
	batches0, writes0, busy0 := s.WriterStats() // the filling's
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		u := us[int(next.Add(1)-1)%users]
		i := 0
		for pb.Next() {
			i++
			uid := uint32(1 + i%190)
			for _, op := range []FlagOp{FlagsAdd, FlagsRemove} {
				if _, _, err := s.UpdateFlags(ctx, u.mbox, FlagUpdate{UIDs: []uint32{uid}, Op: op, Flags: []string{`\Flagged`}}); err != nil {
					b.Error(err)
					return
				}
			}
			body := msg(fmt.Sprint("m", i%100)) + strings.Repeat("body line\r\n", 50+i%100)
			d, err := s.Append(ctx, AppendRequest{AccountID: u.acct, MailboxID: u.mbox, Body: strings.NewReader(body), Flags: []string{`\Seen`}})
			if err != nil {
				b.Error(err)
				return
			}
			if _, _, err := s.UpdateFlags(ctx, u.mbox, FlagUpdate{UIDs: []uint32{d.UID}, Op: FlagsAdd, Flags: []string{`\Deleted`}}); err != nil {
				b.Error(err)
				return
			}
			if _, err := s.Expunge(ctx, u.mbox, nil); err != nil {
				b.Error(err)
				return
			}
		}
	})
	batches, writes, busy := s.WriterStats()
	batches, writes, busy = batches-batches0, writes-writes0, busy-busy0
	if batches > 0 {
		b.ReportMetric(float64(writes)/float64(batches), "writes/commit")
		b.ReportMetric(float64(busy.Microseconds())/float64(b.N), "writer-µs/op")
	}
}

// BenchmarkInlineMessages reads a mailbox's message bytes in the windows
// of a POP3 download (32 messages a query, see pop3server's readAhead),
// from 10 readers at once on one account's INBOX; an op is one message.
func BenchmarkInlineMessages(b *testing.B) {
	s, ctx := openBench(b)
	a, _ := s.AddAccount(ctx, "a@example.org", "h", "")
	inbox, _ := s.MailboxByName(ctx, a.ID, "INBOX")
	const n = 2000
	for j := 0; j < n; j++ {
		body := msg(fmt.Sprint("m", j)) + strings.Repeat("a line of a message body\r\n", 100+j%100)
		if _, err := s.Append(ctx, AppendRequest{AccountID: a.ID, MailboxID: inbox.ID, Body: strings.NewReader(body)}); err != nil {
			b.Fatal(err)
		}
	}
	b.SetParallelism(10 / runtime.GOMAXPROCS(0))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		var sum int
		first := uint32(1)
		for pb.Next() {
			// One op is one message: a window is read every 32 ops.
			if first%32 == 1 {
				if err := s.InlineMessages(ctx, inbox.ID, first, first+31, func(uid uint32, data []byte) error {
					sum += len(data)
					return nil
				}); err != nil {
					b.Error(err)
					return
				}
			}
			first++
			if first > n {
				first = 1
			}
		}
		_ = sum
	})
}
