package smtpserver

import (
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	gosmtp "github.com/emersion/go-smtp"
)

// BenchmarkInbound delivers 2 KiB messages, one connection per message,
// from 20 parallel clients (the shape of bench/smtp without TLS).
func BenchmarkInbound(b *testing.B) {
	e := newEnv(b, Inbound, nil)
	msg := "From: a@remote.example\r\nTo: alice@example.org\r\nSubject: bench\r\n\r\n" + strings.Repeat(strings.Repeat("x", 78)+"\r\n", 26)
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				c, err := gosmtp.Dial(e.addr)
				if err != nil {
					b.Error(err)
					return
				}
				if err := c.SendMail("a@remote.example", []string{"alice@example.org"}, strings.NewReader(msg)); err != nil {
					b.Error(err)
				}
				c.Quit()
			}
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}
