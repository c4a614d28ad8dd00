package store

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func queueTestStore(t *testing.T) *Store {
	t.Helper()
	s, err := Open(context.Background(), t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func queueTestBlob(t *testing.T, s *Store, body string) Blob {
	t.Helper()
	w, err := s.NewBlob()
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte(body))
	b, err := w.Commit()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestQueueLifecycle(t *testing.T) {
	ctx := context.Background()
	s := queueTestStore(t)
	b := queueTestBlob(t, s, "Subject: x\r\n\r\nhi\r\n")
	now := time.Now()
	e := &QueueEntry{From: "a@example.org", EnvID: "E1", Ret: "HDRS", Blob: b, Created: now,
		Recipients: []QueueRecipient{{Address: "x@one.test", Notify: []string{"FAILURE"}}, {Address: "y@two.test"}}}
	id, err := s.QueueAdd(ctx, e)
	if err != nil || id == 0 {
		t.Fatal(id, err)
	}
	due, err := s.QueueDue(ctx, now, time.Time{}, 0, 10)
	if err != nil || len(due) != 1 || due[0].Recipients[0].Notify[0] != "FAILURE" || due[0].Blob.ID != b.ID {
		t.Fatalf("due %+v %v", due, err)
	}
	// One recipient done, the other deferred.
	got := due[0]
	got.Recipients[0].Status = QueueDelivered
	got.Attempts = 1
	got.NextAttempt = now.Add(time.Hour)
	if err := s.QueueUpdate(ctx, &got); err != nil {
		t.Fatal(err)
	}
	if due, _ := s.QueueDue(ctx, now, time.Time{}, 0, 10); len(due) != 0 {
		t.Fatalf("deferred entry is due: %+v", due)
	}
	if next, ok, _ := s.QueueNext(ctx, now); !ok || !next.Equal(time.Unix(0, now.Add(time.Hour).UnixNano())) {
		t.Fatalf("next %v %v", next, ok)
	}
	if n, err := s.QueueRetry(ctx, 0, now); err != nil || n != 1 {
		t.Fatalf("retry all: %d %v", n, err)
	}
	one, err := s.QueueGet(ctx, id)
	if err != nil || one.Attempts != 1 || one.Recipients[0].Status != QueueDelivered {
		t.Fatalf("get %+v %v", one, err)
	}
	// Last recipient fails: the entry goes and so does the blob.
	one.Recipients[1].Status = QueueFailed
	if err := s.QueueUpdate(ctx, &one); err != nil {
		t.Fatal(err)
	}
	if _, err := s.QueueGet(ctx, id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("entry still there: %v", err)
	}
	queueWaitGone(t, s, b.ID)
	if err := s.QueueDrop(ctx, id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("drop missing: %v", err)
	}
}

func TestQueueDropAndList(t *testing.T) {
	ctx := context.Background()
	s := queueTestStore(t)
	b := queueTestBlob(t, s, strings.Repeat("x", 100))
	for i := 0; i < 3; i++ {
		if _, err := s.QueueAdd(ctx, &QueueEntry{From: "", Blob: b, Recipients: []QueueRecipient{{Address: "r@x.test"}}}); err != nil {
			t.Fatal(err)
		}
	}
	l, err := s.QueueList(ctx, 0, 0)
	if err != nil || len(l) != 3 {
		t.Fatalf("list %d %v", len(l), err)
	}
	if n, _ := s.QueueCount(ctx); n != 3 {
		t.Fatalf("count %d", n)
	}
	if max, err := s.QueueMaxID(ctx); err != nil || max != l[2].ID {
		t.Fatalf("max id %d %v", max, err)
	}
	if after, _ := s.QueueAfter(ctx, l[0].ID, 10); len(after) != 2 || after[0].ID != l[1].ID {
		t.Fatalf("after: %+v", after)
	}
	for _, e := range l {
		if err := s.QueueDrop(ctx, e.ID); err != nil {
			t.Fatal(err)
		}
	}
	queueWaitGone(t, s, b.ID)
	if _, err := s.QueueAdd(ctx, &QueueEntry{Blob: b}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("no recipients accepted: %v", err)
	}
}

// queueWaitGone waits for a released blob's file to go (the writer
// removes it just after the commit returns).
func queueWaitGone(t *testing.T, s *Store, id string) {
	t.Helper()
	for i := 0; i < 200; i++ {
		f, err := s.OpenBlob(id)
		if err != nil {
			return
		}
		f.Close()
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("blob not released")
}
