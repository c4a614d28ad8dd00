package control

import (
	"context"
	"os"
	"testing"
)

func TestNotify(t *testing.T) {
	// Unix socket paths are short: use a short temporary directory.
	dir, err := os.MkdirTemp("", "tc")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ctx := context.Background()
	if ok, err := Notify(ctx, dir, "wake-queue"); ok || err != nil {
		t.Fatalf("no server: %v %v", ok, err)
	}
	woke := make(chan int64, 2)
	s, err := Listen(dir, Handler{
		WakeQueue:      func() { woke <- 0 },
		AccountChanged: func(id int64) { woke <- id },
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := Listen(dir, Handler{}, nil); err == nil {
		t.Error("a second server started on the same data directory")
	}
	if ok, err := Notify(ctx, dir, "wake-queue"); !ok || err != nil || <-woke != 0 {
		t.Fatalf("wake: %v %v", ok, err)
	}
	if ok, err := Notify(ctx, dir, "account-changed", "42"); !ok || err != nil || <-woke != 42 {
		t.Fatalf("account: %v %v", ok, err)
	}
	if ok, err := Notify(ctx, dir, "reboot"); ok || err == nil {
		t.Fatalf("unknown request: %v %v", ok, err)
	}
}
