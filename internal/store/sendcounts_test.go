package store

import (
	"context"
	"testing"
	"time"
)

// Submitted messages count for the current hour and the 23 before it;
// older hours drop out and are forgotten.
func TestSendCounts(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	a := mustAccount(t, s, "a@example.org")
	b := mustAccount(t, s, "b@example.org")
	t0 := time.Date(2026, 11, 22, 10, 30, 0, 0, time.UTC)
	for i, at := range []time.Time{t0, t0, t0.Add(time.Hour), t0.Add(20 * time.Hour)} {
		if err := s.CountSent(ctx, a.ID, at, 1+i%2); err != nil {
			t.Fatal(err)
		}
	}
	s.CountSent(ctx, b.ID, t0, 7)
	for _, tc := range []struct {
		at   time.Time
		want int
	}{
		{t0, 3},
		{t0.Add(20 * time.Hour), 3 + 1 + 2},
		{t0.Add(24 * time.Hour), 1 + 2}, // t0's hour has left the window
		{t0.Add(43 * time.Hour), 2},     // only the 20th hour is left
		{t0.Add(-time.Hour), 0},         // nothing yet
		{t0.Add(20*time.Hour + time.Minute), 6},
	} {
		if n, err := s.SentToday(ctx, a.ID, tc.at); err != nil || n != tc.want {
			t.Errorf("SentToday(%v) = %d, %v; want %d", tc.at, n, err, tc.want)
		}
	}
	if n, _ := s.SentToday(ctx, b.ID, t0); n != 7 {
		t.Errorf("b sent %d, want 7", n)
	}
	// Counting a day later forgets the hours out of the window.
	s.CountSent(ctx, a.ID, t0.Add(48*time.Hour), 1)
	var rows int
	s.db.QueryRowContext(ctx, "SELECT count(*) FROM send_counts WHERE account_id = ?", a.ID).Scan(&rows)
	if rows != 1 {
		t.Errorf("%d hourly rows kept, want 1", rows)
	}
}
