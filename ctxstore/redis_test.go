package ctxstore

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/parley-go/parley/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// sharedRedis returns a cold tier on the shared test server under a prefix
// of its own, whose keys are deleted when the test ends. It leaves the
// server's configuration alone.
func sharedRedis(t testing.TB) (*Redis, *redis.Client) {
	t.Helper()
	c := redistest.Client(t)
	prefix := fmt.Sprintf("parley:ctxstore-test:%d:", time.Now().UnixNano())
	t.Cleanup(func() { deleteKeys(t, c, prefix) })
	return NewRedis(c, RedisConfig{Prefix: prefix, KeepServerConfig: true, Logger: discard}), c
}

// deleteKeys deletes every key under prefix.
func deleteKeys(t testing.TB, c *redis.Client, prefix string) {
	ctx := context.Background()
	iter := c.Scan(ctx, 0, globEscape(prefix)+"*", 1000).Iterator()
	var keys []string
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil {
		t.Errorf("scanning test keys: %v", err)
	}
	for len(keys) > 0 {
		n := min(len(keys), 1000)
		if err := c.Del(ctx, keys[:n]...).Err(); err != nil {
			t.Errorf("deleting test keys: %v", err)
		}
		keys = keys[n:]
	}
}

// redisServer is a redis-server process of the test's own, for tests that
// kill it or change its configuration.
type redisServer struct {
	t    testing.TB
	addr string
	args []string
	mu   sync.Mutex
	cmd  *exec.Cmd
}

// startRedis starts a redis-server on a free loopback port with an
// append-only file fsynced on every write (so that a killed server
// restarts with every write it acknowledged) plus args. Without a
// redis-server binary the test is skipped, or fails under CI.
func startRedis(t testing.TB, args ...string) *redisServer {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if redistest.InCI() {
			t.Fatalf("redis-server not found under CI: %v", err)
		}
		t.Skipf("skipping: this test runs its own redis-server, and none is installed (%v)", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	_, port, _ := net.SplitHostPort(addr)
	s := &redisServer{t: t, addr: addr, args: append([]string{
		bin, "--port", port, "--bind", "127.0.0.1", "--dir", t.TempDir(),
		"--save", "", "--appendonly", "yes", "--appendfsync", "always",
	}, args...)}
	s.start()
	t.Cleanup(s.kill)
	return s
}

func (s *redisServer) start() {
	s.t.Helper()
	cmd := exec.Command(s.args[0], s.args[1:]...)
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("starting redis-server: %v", err)
	}
	s.mu.Lock()
	s.cmd = cmd
	s.mu.Unlock()
	c := redis.NewClient(&redis.Options{Addr: s.addr, MaxRetries: -1})
	defer c.Close()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if err := c.Ping(context.Background()).Err(); err == nil {
			return
		} else if time.Now().After(deadline) {
			s.t.Fatalf("redis-server at %s did not answer: %v", s.addr, err)
		}
	}
}

// kill kills the server with SIGKILL, as a crash would.
func (s *redisServer) kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGKILL)
	s.cmd.Wait()
	s.cmd = nil
}

func (s *redisServer) client(t testing.TB) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: s.addr})
	t.Cleanup(func() { c.Close() })
	return c
}

func TestRedisCold(t *testing.T) {
	r, _ := sharedRedis(t)
	testColdTier(t, r, "t")
}

func TestRedisLayout(t *testing.T) {
	r, c := sharedRedis(t)
	ctx := context.Background()
	k := Key{"acme", "s1"}
	ws := []Write{{Key: k, Seq: 18446744073709551615, Data: []byte("max"), TTL: time.Hour}}
	if err := r.Write(ctx, ws); err != nil || ws[0].Err != nil {
		t.Fatalf("Write = %v, %v", err, ws[0].Err)
	}
	got, err := c.HGetAll(ctx, r.prefix+"acme:s1").Result()
	if err != nil || got["s"] != "18446744073709551615" || got["d"] != "max" || len(got) != 2 {
		t.Errorf("HGETALL = %v, %v; want s=18446744073709551615 d=max", got, err)
	}
	if ttl := c.PTTL(ctx, r.prefix+"acme:s1").Val(); ttl <= 0 || ttl > time.Hour {
		t.Errorf("PTTL = %v, want within (0, 1h]", ttl)
	}
	// Sequence numbers compare exactly across the whole uint64 range.
	ws = []Write{{Key: k, Seq: 18446744073709551614, Data: []byte("less"), TTL: time.Hour}}
	if err := r.Write(ctx, ws); err != nil || !errors.Is(ws[0].Err, ErrStale) {
		t.Errorf("Write(max-1 over max) = %v, %v; want ErrStale", err, ws[0].Err)
	}
}

func TestRedisCorruptRecord(t *testing.T) {
	r, c := sharedRedis(t)
	s := newStore(t, r, Config{})
	c.HSet(context.Background(), r.prefix+"acme:bad", "s", "3", "d", "garbage")
	_, err := s.Get(context.Background(), "acme", "bad")
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "acme:bad") {
		t.Errorf("Get of a corrupt record = %v, want ErrCorrupt naming acme:bad", err)
	}
}

// TestRedisRestart writes through one store, closes it, and reads
// everything back through a fresh store on the same Redis, as a restarted
// process would.
func TestRedisRestart(t *testing.T) {
	checkNoLeak(t)
	r, _ := sharedRedis(t)
	testRestart(t, func() Cold { return r })
}

// testRestart writes sessions through one store, closes it, and checks
// that a fresh store on the cold tier returned by open serves them all.
func testRestart(t *testing.T, open func() Cold) {
	const sessions = 500
	ctx := context.Background()
	s1, err := New(open(), Config{Logger: discard})
	if err != nil {
		t.Fatal(err)
	}
	want := make(map[string]string)
	for i := range sessions {
		id := fmt.Sprint("s", i)
		r := fill(s1.NewRecord("acme", id), id)
		mustPut(t, s1, r)
		if i%3 == 0 { // some sessions have a second version
			r.Append(Turn{Role: RoleUser, Text: "second " + id})
			mustPut(t, s1, r)
		}
		want[id] = dump(r)
	}
	if err := s1.Close(ctx); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	s2 := newStore(t, open(), Config{})
	for id, w := range want {
		if got := dump(mustGet(t, s2, "acme", id)); got != w {
			t.Fatalf("after restart Get(%s) =\n%s\nwant\n%s", id, got, w)
		}
	}
	if st := s2.Stats(); st.ColdLoads != sessions {
		t.Errorf("after restart: %d cold loads, want %d (one per session)", st.ColdLoads, sessions)
	}
}

// TestRedisExpiryNotifications checks that a cold expiry reported by Redis
// drops the hot entry at once, long before its own TTL. It runs its own
// server because it turns keyspace notifications on.
func TestRedisExpiryNotifications(t *testing.T) {
	checkNoLeak(t)
	srv := startRedis(t)
	c := srv.client(t)
	var logs logBuffer
	r := NewRedis(c, RedisConfig{Logger: logs.logger()})
	s := newStore(t, r, Config{TTL: time.Hour})
	ctx := context.Background()
	mustPut(t, s, fill(s.NewRecord("acme", "s1"), "v1"))
	mustFlush(t, s)
	if flags := c.ConfigGet(ctx, "notify-keyspace-events").Val()["notify-keyspace-events"]; !strings.Contains(flags, "K") || !strings.Contains(flags, "x") {
		t.Errorf("notify-keyspace-events = %q, want K and x enabled", flags)
	}
	mustGet(t, s, "acme", "s1") // hot
	loads := s.Stats().ColdLoads
	c.PExpire(ctx, r.prefix+"acme:s1", time.Millisecond)
	// The event is asynchronous; wait for it (generously: this is not a
	// timing check).
	for deadline := time.Now().Add(10 * time.Second); s.Stats().ExpiryEvents == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no expiry event within 10s")
		}
	}
	if _, err := s.Get(ctx, "acme", "s1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get after the cold entry expired = %v, want ErrNotFound", err)
	}
	if got := s.Stats().ColdLoads; got != loads+1 {
		t.Errorf("cold loads = %d, want %d: the hot entry should have been dropped", got, loads+1)
	}

	// A restarted server has forgotten CONFIG SET; the store turns the
	// events on again when it resubscribes.
	srv.kill()
	srv.start()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		flags := c.ConfigGet(ctx, "notify-keyspace-events").Val()["notify-keyspace-events"]
		if strings.Contains(flags, "K") && strings.Contains(flags, "x") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("notify-keyspace-events = %q 10s after a restart, want K and x enabled again", flags)
		}
	}
	mustPut(t, s, fill(s.NewRecord("acme", "s2"), "v1"))
	mustFlush(t, s)
	mustGet(t, s, "acme", "s2")
	c.PExpire(ctx, r.prefix+"acme:s2", time.Millisecond)
	for deadline := time.Now().Add(10 * time.Second); s.Stats().ExpiryEvents < 2; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no expiry event within 10s after the restart")
		}
	}
	if _, err := s.Get(ctx, "acme", "s2"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get after the cold entry expired = %v, want ErrNotFound", err)
	}
	if strings.Contains(logs.String(), "unavailable") {
		t.Errorf("logged %q with notifications available", logs.String())
	}
}

// TestRedisConfigRefused runs against a server whose CONFIG command is
// disabled, as on many managed services: the store says so once and keeps
// working on its local TTLs.
func TestRedisConfigRefused(t *testing.T) {
	checkNoLeak(t)
	srv := startRedis(t, "--rename-command", "CONFIG", "")
	var logs logBuffer
	r := NewRedis(srv.client(t), RedisConfig{Logger: logs.logger()})
	s := newStore(t, r, Config{})
	s2 := newStore(t, r, Config{}) // a second store says it again, once
	mustPut(t, s, fill(s.NewRecord("acme", "s1"), "v1"))
	mustFlush(t, s)
	if got := mustGet(t, s2, "acme", "s1"); got.Seq() != 1 {
		t.Errorf("Get through the second store = seq %d, want 1", got.Seq())
	}
	out := logs.String()
	if n := strings.Count(out, "expiry notifications unavailable"); n != 2 || !strings.Contains(out, "CONFIG GET refused") {
		t.Errorf("logs = %q, want one 'unavailable' warning per store naming the refused CONFIG", out)
	}
}

// TestRedisFault kills the store's Redis in the middle of a stream of
// Puts and restarts it: Puts keep succeeding meanwhile, the write-behind
// retries, and every acknowledged write arrives.
func TestRedisFault(t *testing.T) {
	checkNoLeak(t)
	srv := startRedis(t)
	c := redis.NewClient(&redis.Options{Addr: srv.addr, MaxRetries: 1, DialTimeout: time.Second})
	t.Cleanup(func() { c.Close() })
	s := newStore(t, NewRedis(c, RedisConfig{Logger: discard}), Config{})
	ctx := context.Background()

	const sessions = 200
	recs := make([]*Record, sessions)
	for i := range recs {
		recs[i] = s.NewRecord("acme", fmt.Sprint("s", i))
	}
	put := func(round int) {
		t.Helper()
		for _, r := range recs {
			r.Append(Turn{Role: RoleUser, Text: fmt.Sprint("round ", round)})
			r.SetSlot("round", strconv.Itoa(round))
			mustPut(t, s, r)
		}
	}
	round := 0
	for ; round < 5; round++ {
		put(round)
	}
	srv.kill()
	for s.Stats().ColdErrors == 0 { // keep writing until the outage is felt
		put(round)
		round++
		time.Sleep(time.Millisecond)
	}
	for range 5 {
		put(round)
		round++
	}
	if got := s.Stats().Pending; got == 0 {
		t.Fatal("nothing pending during the outage")
	}
	for _, r := range recs[:10] { // served from memory meanwhile
		if got := mustGet(t, s, "acme", r.Key().ID); got.Seq() != r.Seq() {
			t.Fatalf("Get during the outage = seq %d, want %d", got.Seq(), r.Seq())
		}
	}
	srv.start()
	for range 5 {
		put(round)
		round++
	}
	fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := s.Flush(fctx); err != nil {
		t.Fatalf("Flush after the restart = %v", err)
	}

	// Read back from the server itself, not through the store.
	fresh := srv.client(t)
	for _, r := range recs {
		key := "parley:ctx:" + r.Key().String()
		got, err := fresh.HGetAll(ctx, key).Result()
		if err != nil || got["s"] != strconv.FormatUint(r.Seq(), 10) {
			t.Fatalf("HGETALL %s = s %q, %v; want the last acknowledged seq %d", key, got["s"], err, r.Seq())
		}
		back, err := decode(r.Key(), []byte(got["d"]), r.window())
		if err != nil || dump(back) != dump(r) {
			t.Fatalf("record %s = %v, %v; want the last acknowledged version", key, back, err)
		}
	}
	st := s.Stats()
	t.Logf("%d rounds; stats %+v", round, st)
	if st.ColdErrors == 0 || st.Pending != 0 {
		t.Errorf("stats %+v: want cold errors seen and nothing pending", st)
	}
}
