package store

import (
	"context"
	"testing"
	"time"
)

func TestPolicyCache(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	if _, _, _, found, err := s.LoadPolicy(ctx, "example.org"); found || err != nil {
		t.Fatalf("empty cache: %v %v", found, err)
	}
	exp := time.Now().Add(time.Hour).Truncate(time.Second)
	for _, id := range []string{"1", "2"} {
		if err := s.SavePolicy(ctx, "example.org", id, "mode: "+id, exp); err != nil {
			t.Fatal(err)
		}
	}
	id, text, got, found, err := s.LoadPolicy(ctx, "example.org")
	if err != nil || !found || id != "2" || text != "mode: 2" || !got.Equal(exp) {
		t.Fatalf("load: %q %q %v %v %v", id, text, got, found, err)
	}
}
