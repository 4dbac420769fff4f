package ctxstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis is the [Cold] tier shared by a fleet: one Redis hash per session
// (field s the sequence number, field d the encoded record) with a TTL,
// under the key Prefix + "tenant:id". It works with any
// redis.UniversalClient: standalone, Sentinel or Cluster.
//
// A batch is one pipeline of Lua script calls (up to 64 keys each, one
// with a Cluster client), which apply a write only if its sequence number
// moves forward, so concurrent writers on different nodes never overwrite
// each other silently. Redis implements [Expirer] through keyspace
// notifications (see [Redis.WatchExpiry]).
//
// The zero Redis is invalid; use [NewRedis]. A Redis is safe for concurrent
// use by multiple goroutines.
type Redis struct {
	c      redis.UniversalClient
	cfg    RedisConfig
	prefix string
}

// RedisConfig holds the optional settings of a [Redis] cold tier.
type RedisConfig struct {
	// Prefix starts every key, so that several stores (or tests) share a
	// server without meeting. Default "parley:ctx:".
	Prefix string

	// KeepServerConfig stops WatchExpiry from enabling keyspace
	// notifications with CONFIG SET; it then uses whatever the server
	// already publishes. By default WatchExpiry adds the flags it needs
	// ("Kx") to the server's notify-keyspace-events, keeping the others.
	KeepServerConfig bool

	// Logger receives the one message WatchExpiry logs when expiry
	// notifications are unavailable. Default slog.Default().
	Logger *slog.Logger
}

// NewRedis returns a cold tier on c. It does not take ownership of c: the
// caller closes c after closing the [Store].
func NewRedis(c redis.UniversalClient, cfg RedisConfig) *Redis {
	cfg.Prefix = cmp.Or(cfg.Prefix, "parley:ctx:")
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Redis{c: c, cfg: cfg, prefix: cfg.Prefix}
}

// writeScript applies a write to each KEYS[i], with ARGV[3i-2] its
// sequence number (decimal), ARGV[3i-1] its data and ARGV[3i] its TTL in
// milliseconds, if the sequence number moves forward or repeats the stored
// one with the same data; it returns 1 (applied) or 0 (refused) per key.
// Sequence numbers compare as decimal strings (length, then bytes), which
// is exact for all of uint64 where Lua's numbers are not. One call carries
// many keys because the call, not the work, is most of a script's cost.
var writeScript = redis.NewScript(`
local res = {}
for i, key in ipairs(KEYS) do
  local seq, data = ARGV[3*i-2], ARGV[3*i-1]
  local cur = redis.call('HGET', key, 's')
  if cur and (#cur > #seq or (#cur == #seq and (cur > seq or
      (cur == seq and redis.call('HGET', key, 'd') ~= data)))) then
    res[i] = 0
  else
    redis.call('HSET', key, 's', seq, 'd', data)
    redis.call('PEXPIRE', key, ARGV[3*i])
    res[i] = 1
  end
end
return res
`)

// scriptKeys is the most keys one writeScript call carries: enough to make
// the call's cost small per key, few enough (about 0.2 ms of work) not to
// hold up the server's other clients. A Cluster client sends one key per
// call, as the keys of one call must share a hash slot.
const scriptKeys = 64

// loadScript returns the record and its remaining TTL in one step.
var loadScript = redis.NewScript(`
local d = redis.call('HGET', KEYS[1], 'd')
if not d then return false end
return {d, redis.call('PTTL', KEYS[1])}
`)

func (r *Redis) key(k Key) string { return r.prefix + k.String() }

// Load implements [Cold.Load].
func (r *Redis) Load(ctx context.Context, k Key) ([]byte, time.Time, error) {
	res, err := loadScript.Run(ctx, r.c, []string{r.key(k)}).Slice()
	if errors.Is(err, redis.Nil) {
		return nil, time.Time{}, fmt.Errorf("%w: %s", ErrNotFound, k)
	}
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("ctxstore: redis load %s: %w", k, err)
	}
	var (
		data    string
		pttl    int64
		ok      = len(res) == 2
		expires time.Time
	)
	if ok {
		var okTTL bool
		data, ok = res[0].(string)
		pttl, okTTL = res[1].(int64)
		ok = ok && okTTL
	}
	if !ok {
		return nil, time.Time{}, fmt.Errorf("ctxstore: redis load %s: unexpected reply %v", k, res)
	}
	if pttl >= 0 { // -1: the key has no TTL (someone removed it)
		expires = time.Now().Add(time.Duration(pttl) * time.Millisecond)
	}
	return []byte(data), expires, nil
}

// Write implements [Cold.Write] with one pipeline for the whole batch:
// runs of writes go in writeScript calls of up to 64 keys, deletes as DEL,
// in the batch's order.
func (r *Redis) Write(ctx context.Context, ws []Write) error {
	for attempt := 0; ; attempt++ {
		b := r.pipeline(ctx, ws)
		_, err := b.pipe.Exec(ctx)
		if err == nil {
			return b.results(ws)
		}
		// A restarted server has forgotten the script: load it and go again.
		if attempt == 0 && b.noScript() {
			if err := writeScript.Load(ctx, r.c).Err(); err != nil {
				return fmt.Errorf("ctxstore: redis script load: %w", err)
			}
			continue
		}
		return fmt.Errorf("ctxstore: redis write of %d records: %w", len(ws), err)
	}
}

// redisBatch is one batch of writes queued on a pipeline.
type redisBatch struct {
	pipe redis.Pipeliner
	cmds []redisCmd
}

// redisCmd is a command of a batch and the writes it carries: ws[first:end].
type redisCmd struct {
	cmd        redis.Cmder
	first, end int
}

func (r *Redis) pipeline(ctx context.Context, ws []Write) *redisBatch {
	perCall := scriptKeys
	if _, ok := r.c.(*redis.ClusterClient); ok {
		perCall = 1
	}
	b := &redisBatch{pipe: r.c.Pipeline()}
	for i := 0; i < len(ws); {
		if ws[i].Data == nil {
			b.cmds = append(b.cmds, redisCmd{b.pipe.Del(ctx, r.key(ws[i].Key)), i, i + 1})
			i++
			continue
		}
		end := i
		for end < len(ws) && end-i < perCall && ws[end].Data != nil {
			end++
		}
		keys := make([]string, 0, end-i)
		args := make([]any, 0, 3*(end-i))
		for _, w := range ws[i:end] {
			keys = append(keys, r.key(w.Key))
			args = append(args, strconv.FormatUint(w.Seq, 10), w.Data, max(w.TTL.Milliseconds(), 1))
		}
		b.cmds = append(b.cmds, redisCmd{writeScript.EvalSha(ctx, b.pipe, keys, args...), i, end})
		i = end
	}
	return b
}

func (b *redisBatch) noScript() bool {
	for _, c := range b.cmds {
		if redis.HasErrorPrefix(c.cmd.Err(), "NOSCRIPT") {
			return true
		}
	}
	return false
}

// results sets each write's Err from its script's reply.
func (b *redisBatch) results(ws []Write) error {
	for _, c := range b.cmds {
		for i := c.first; i < c.end; i++ {
			ws[i].Err = nil
		}
		cmd, ok := c.cmd.(*redis.Cmd)
		if !ok {
			continue // a DEL
		}
		applied, err := cmd.Int64Slice()
		if err == nil && len(applied) != c.end-c.first {
			err = fmt.Errorf("%d replies for %d keys", len(applied), c.end-c.first)
		}
		if err != nil {
			return fmt.Errorf("ctxstore: redis write %s: %w", ws[c.first].Key, err)
		}
		for i, a := range applied {
			if a == 0 {
				ws[c.first+i].Err = ErrStale
			}
		}
	}
	return nil
}

// expiryFlags are the notify-keyspace-events flags WatchExpiry needs:
// keyspace events (K) for expired keys (x).
const expiryFlags = "Kx"

// WatchExpiry implements [Expirer] with keyspace notifications: it
// subscribes to the "expired" events of the keys under Prefix and calls fn
// for each, from a goroutine that the returned stop function ends.
//
// Unless [RedisConfig.KeepServerConfig] is set, it first enables the
// events with CONFIG SET, and again whenever it resubscribes after losing
// its connection (a restarted server forgets CONFIG SET). When the events
// cannot be had (CONFIG is refused, as managed services often do; the
// server publishes none; or c is a Cluster client, whose events are per
// node) it logs that once, and the store keeps working on its local TTLs,
// which never outlive 2/3 of the cold TTL. Notifications lost while
// disconnected are likewise covered by the local TTLs.
func (r *Redis) WatchExpiry(fn func(Key)) (stop func()) {
	client, ok := r.c.(*redis.Client)
	if !ok {
		r.unavailable(fmt.Errorf("%T is not a single-node client", r.c))
		return func() {}
	}
	var warned bool
	enable := func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err := r.enableExpiryEvents(ctx)
		if err != nil && !warned {
			warned = true
			r.unavailable(err)
		}
		return err == nil
	}
	enabled := enable()
	channel := fmt.Sprintf("__keyspace@%d__:", client.Options().DB)
	ps := r.c.PSubscribe(context.Background(), channel+globEscape(r.prefix)+"*")
	msgs := ps.ChannelWithSubscriptions()
	done := make(chan struct{})
	go func() {
		defer close(done)
		subscriptions := 0
		for m := range msgs {
			switch m := m.(type) {
			case *redis.Subscription:
				// After the first, a subscription means go-redis
				// reconnected, maybe to a restarted server that has
				// forgotten CONFIG SET (or to one that was down at first).
				if subscriptions++; subscriptions > 1 || !enabled {
					enabled = enable()
				}
			case *redis.Message:
				if m.Payload != "expired" {
					continue
				}
				if k, ok := parseKey(strings.TrimPrefix(m.Channel, channel+r.prefix)); ok {
					fn(k)
				}
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			ps.Close()
			<-done
		})
	}
}

// enableExpiryEvents makes sure the server publishes expiry events.
func (r *Redis) enableExpiryEvents(ctx context.Context) error {
	cur, err := r.c.ConfigGet(ctx, "notify-keyspace-events").Result()
	if err != nil {
		return fmt.Errorf("CONFIG GET refused: %w", err)
	}
	flags := cur["notify-keyspace-events"]
	want := withExpiryFlags(flags)
	if want == flags {
		return nil
	}
	if r.cfg.KeepServerConfig {
		return fmt.Errorf("notify-keyspace-events is %q and KeepServerConfig is set", flags)
	}
	if err := r.c.ConfigSet(ctx, "notify-keyspace-events", want).Err(); err != nil {
		return fmt.Errorf("CONFIG SET refused: %w", err)
	}
	return nil
}

func (r *Redis) unavailable(err error) {
	r.cfg.Logger.Warn("ctxstore: redis expiry notifications unavailable; hot entries expire on their local TTL only",
		"prefix", r.prefix, "err", err)
}

// withExpiryFlags returns notify-keyspace-events flags that include the
// expiry events, keeping every flag already set. The server may report
// the flags in any order and writes "A" for "g$lshzxetd".
func withExpiryFlags(flags string) string {
	for _, f := range expiryFlags {
		if !strings.ContainsRune(flags, f) && (f != 'x' || !strings.ContainsRune(flags, 'A')) {
			flags += string(f)
		}
	}
	return flags
}

// globEscape escapes the characters PSUBSCRIBE patterns treat specially.
func globEscape(s string) string {
	var b strings.Builder
	for _, c := range s {
		if strings.ContainsRune(`*?[]\`, c) {
			b.WriteByte('\\')
		}
		b.WriteRune(c)
	}
	return b.String()
}
