// Package redistest finds the Redis server that tests run against.
//
// Tests that need Redis call [Client] (or [Addr]). The server is the one at
// REDIS_ADDR, or 127.0.0.1:6379 when REDIS_ADDR is unset. When no server
// answers, the test is skipped with a message saying how to run it, except
// under CI (CI=true), where it fails: tests against a real Redis must never
// disappear silently from a CI run.
package redistest

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultAddr is the server used when REDIS_ADDR is unset.
const DefaultAddr = "127.0.0.1:6379"

// pingTimeout bounds how long Addr waits for the server to answer.
const pingTimeout = 2 * time.Second

// Addr returns the address of a Redis server that answers PING. When none
// answers it skips tb, or fails it when the CI environment variable is true.
func Addr(tb testing.TB) string {
	tb.Helper()
	addr := os.Getenv("REDIS_ADDR")
	if addr == "" {
		addr = DefaultAddr
	}
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), pingTimeout)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		unreachable(tb, addr, err)
	}
	return addr
}

// Client returns a client connected to the server named by [Addr], closed
// when tb ends. It skips or fails tb as Addr does.
func Client(tb testing.TB) *redis.Client {
	tb.Helper()
	c := redis.NewClient(&redis.Options{Addr: Addr(tb)})
	tb.Cleanup(func() { c.Close() })
	return c
}

func unreachable(tb testing.TB, addr string, err error) {
	tb.Helper()
	if InCI() {
		tb.Fatalf("redistest: Redis at %s is unreachable under CI: %v", addr, err)
	}
	tb.Skipf("redistest: skipping, no Redis at %s (%v); start one with "+
		"`redis-server --port 6379 --save '' --appendonly no` or set REDIS_ADDR=host:port to run this test", addr, err)
}

// InCI reports whether the CI environment variable is set to a true value
// ("true", "1", ...), as CI services set it.
func InCI() bool {
	ci, err := strconv.ParseBool(os.Getenv("CI"))
	return err == nil && ci
}
