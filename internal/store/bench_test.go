package store

import (
	"context"
	"strings"
	"testing"
)

// BenchmarkAppendParallel measures durable deliveries per second with many
// concurrent writers sharing commits.
func BenchmarkAppendParallel(b *testing.B) {
	s, err := Open(context.Background(), b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	s.AddDomain(ctx, "example.org")
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
