package redistest

import (
	"context"
	"testing"
)

func TestClientPings(t *testing.T) {
	c := Client(t)
	if got, err := c.Ping(context.Background()).Result(); err != nil || got != "PONG" {
		t.Fatalf("Ping() = %q, %v; want PONG, nil", got, err)
	}
}

func TestInCI(t *testing.T) {
	tests := []struct {
		env  string
		want bool
	}{
		{"", false},
		{"true", true},
		{"1", true},
		{"false", false},
		{"yes-please", false},
	}
	for _, tt := range tests {
		t.Run("CI="+tt.env, func(t *testing.T) {
			t.Setenv("CI", tt.env)
			if got := InCI(); got != tt.want {
				t.Errorf("InCI() with CI=%q = %v, want %v", tt.env, got, tt.want)
			}
		})
	}
}
