package server

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/parley-go/parley/backpressure"
	"github.com/parley-go/parley/ctxstore"
)

// testEnv is a chat server on a loopback port with an in-memory cold tier.
type testEnv struct {
	srv   *Server
	store *ctxstore.Store
	cold  ctxstore.Cold
	hs    *httptest.Server
	model *countingModel
	url   string // ws://.../ws
}

// countingModel wraps a Model and counts the prompts it is asked.
type countingModel struct {
	Model
	prompts atomic.Int64
}

func (m *countingModel) Complete(ctx context.Context, prompts [][]Message) ([]Completion, error) {
	m.prompts.Add(int64(len(prompts)))
	return m.Model.Complete(ctx, prompts)
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// newSim returns a simulated model configured by cfg.
func newSim(t *testing.T, cfg SimConfig) *SimModel {
	t.Helper()
	m, err := NewSimModel(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// newEnv starts a server whose model answers after 5 ms, adjusted by edit.
func newEnv(t *testing.T, edit func(*Config)) *testEnv {
	t.Helper()
	return newEnvWith(t, &ctxstore.Memory{}, newSim(t, SimConfig{Latency: 5 * time.Millisecond, Seed: 1}), edit)
}

func newEnvWith(t *testing.T, cold ctxstore.Cold, model Model, edit func(*Config)) *testEnv {
	t.Helper()
	// As a host wires it: the store tells the server about writes the
	// cold tier refused.
	var srvp atomic.Pointer[Server]
	store, err := ctxstore.New(cold, ctxstore.Config{Logger: quietLogger(), OnWriteError: func(k ctxstore.Key, err error) {
		if srv := srvp.Load(); srv != nil {
			srv.StoreWriteError(k, err)
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	cm := &countingModel{Model: model}
	cfg := Config{Model: cm, Store: store, Logger: quietLogger()}
	if edit != nil {
		edit(&cfg)
	}
	srv, err := New(cfg)
	srvp.Store(srv)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	e := &testEnv{srv: srv, store: store, cold: cold, hs: hs, model: cm, url: "ws" + strings.TrimPrefix(hs.URL, "http") + "/ws"}
	t.Cleanup(func() { e.stop(t) })
	return e
}

// stop drains the server and closes the store; it may be called early.
func (e *testEnv) stop(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.srv.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	e.hs.Close()
	if err := e.store.Close(ctx); err != nil {
		t.Errorf("store.Close: %v", err)
	}
}

// client is a test's end of one connection.
type client struct {
	t    *testing.T
	conn *websocket.Conn
}

func (e *testEnv) dial(t *testing.T, query string) *client {
	t.Helper()
	c, err := e.dialErr(query)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { c.CloseNow() })
	return &client{t: t, conn: c}
}

func (e *testEnv) dialErr(query string) (*websocket.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	url := e.url
	if query != "" {
		url += "?" + query
	}
	c, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{Subprotocols: []string{Subprotocol}})
	return c, err
}

// hello dials and reads the hello frame.
func (e *testEnv) hello(t *testing.T, query string) (*client, Frame) {
	t.Helper()
	c := e.dial(t, query)
	f := c.read()
	if f.Type != typeHello || f.Session == "" {
		t.Fatalf("first frame = %+v, want a hello with a session id", f)
	}
	return c, f
}

func (c *client) send(v any) {
	c.t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		c.t.Fatal(err)
	}
	c.sendRaw(websocket.MessageText, data)
}

func (c *client) sendRaw(typ websocket.MessageType, data []byte) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.conn.Write(ctx, typ, data); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

func (c *client) text(id, text string) {
	c.t.Helper()
	c.send(clientFrame{Type: typeText, ID: id, Text: text})
}

func (c *client) read() Frame {
	c.t.Helper()
	f, err := c.readErr()
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	return f
}

func (c *client) readErr() (Frame, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, data, err := c.conn.Read(ctx)
	if err != nil {
		return Frame{}, err
	}
	var f Frame
	if err := json.Unmarshal(data, &f); err != nil {
		c.t.Fatalf("server sent invalid JSON %q: %v", data, err)
	}
	return f, nil
}

// ask sends a text and reads the next frame.
func (c *client) ask(id, text string) Frame {
	c.t.Helper()
	c.text(id, text)
	return c.read()
}

// closeStatus reads until the connection closes and returns its status
// and reason.
func (c *client) closeStatus() (websocket.StatusCode, string) {
	c.t.Helper()
	for {
		_, err := c.readErr()
		if err == nil {
			continue
		}
		var ce websocket.CloseError
		if errors.As(err, &ce) {
			return ce.Code, ce.Reason
		}
		return -1, err.Error()
	}
}

func TestChatTurn(t *testing.T) {
	e := newEnv(t, nil)
	c, hello := e.hello(t, "")
	if hello.State != "HELLO" || hello.Resumed {
		t.Errorf("hello = %+v, want state HELLO, not resumed", hello)
	}
	for i, id := range []string{"m1", "m2"} {
		f := c.ask(id, "tell me about parsnips")
		if f.Type != typeReply || f.ID != id || f.State != "CHATTING" || f.Text == "" {
			t.Fatalf("reply %d = %+v, want a CHATTING reply to %s", i, f, id)
		}
		if f.ModelMS < 5 || f.Fallback || f.Replay {
			t.Errorf("reply %d = %+v, want model_ms >= 5, not fallback, not replay", i, f)
		}
	}
}

func TestRepeatedIDIsAnsweredFromMemory(t *testing.T) {
	e := newEnv(t, nil)
	c, _ := e.hello(t, "")
	first := c.ask("m1", "what is a parsnip")
	again := c.ask("m1", "what is a parsnip")
	if again.Type != typeReply || !again.Replay || again.Text != first.Text || again.ID != "m1" {
		t.Errorf("repeat of m1 = %+v, want a replay of %+v", again, first)
	}
	if got := e.model.prompts.Load(); got != 1 {
		t.Errorf("model was asked %d prompts for one id sent twice, want 1", got)
	}
}

func TestResumeKeepsContextStateAndAnswers(t *testing.T) {
	e := newEnv(t, nil)
	c, hello := e.hello(t, "")
	first := c.ask("m1", "first question")
	c.ask("m2", "second question")
	c.conn.Close(websocket.StatusNormalClosure, "")

	c2, hello2 := e.hello(t, "session="+hello.Session)
	if !hello2.Resumed || hello2.Session != hello.Session || hello2.State != "CHATTING" || hello2.Turns != 4 {
		t.Fatalf("resumed hello = %+v, want session %s resumed in CHATTING with 4 turns", hello2, hello.Session)
	}
	if f := c2.ask("m1", "first question"); !f.Replay || f.Text != first.Text {
		t.Errorf("m1 after resume = %+v, want the replay of %q", f, first.Text)
	}
	if f := c2.ask("m3", "third question"); f.Type != typeReply || !strings.Contains(f.Text, "turn 3") {
		t.Errorf("m3 after resume = %+v, want the model to see 3 user turns", f)
	}
}

func TestResumeTakesOverLiveConnection(t *testing.T) {
	e := newEnv(t, nil)
	c, hello := e.hello(t, "")
	c.ask("m1", "hello there")
	c2, hello2 := e.hello(t, "session="+hello.Session)
	if !hello2.Resumed || hello2.Turns != 2 {
		t.Errorf("takeover hello = %+v, want resumed with 2 turns", hello2)
	}
	if code, _ := c.closeStatus(); code != statusReplaced {
		t.Errorf("old connection closed with %v, want %v", code, statusReplaced)
	}
	if f := c2.ask("m2", "still there?"); f.Type != typeReply {
		t.Errorf("reply on the new connection = %+v", f)
	}
}

// flush waits until e's context store has written everything to the cold
// tier.
func (e *testEnv) flush(t *testing.T) {
	t.Helper()
	if err := e.store.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// splitSession serves one session from two servers on one cold tier, as a
// broken router would: a1 on node a, b1 on node b, then a2 (refused as
// stale once cold) and a3 (merged into b's record) on node a, flushing
// after each. It returns the cold tier, node a, its client, the session id
// and node a's three replies.
func splitSession(t *testing.T) (cold *ctxstore.Memory, a *testEnv, ca *client, session string, replies []Frame) {
	t.Helper()
	cold = &ctxstore.Memory{}
	a = newEnvWith(t, cold, newSim(t, SimConfig{Seed: 1}), nil)
	b := newEnvWith(t, cold, newSim(t, SimConfig{Seed: 1}), nil)
	ca, hello := a.hello(t, "")
	replies = append(replies, ca.ask("a1", "first from node a"))
	a.flush(t)
	cb, _ := b.hello(t, "session="+hello.Session)
	cb.ask("b1", "then from node b")
	b.flush(t)
	replies = append(replies, ca.ask("a2", "again from node a"))
	a.flush(t)
	replies = append(replies, ca.ask("a3", "and once more from node a"))
	a.flush(t)
	return cold, a, ca, hello.Session, replies
}

// TestTwoNodesWritingOneSession checks that no turn is lost when two nodes
// serve one session: the server whose write the cold tier refused merges
// its turns into the newer record.
func TestTwoNodesWritingOneSession(t *testing.T) {
	cold, a, _, session, _ := splitSession(t)
	data, _, err := cold.Load(context.Background(), ctxstore.Key{Tenant: "default", ID: session})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"first from node a", "then from node b", "again from node a", "and once more from node a"} {
		if n := strings.Count(string(data), want); n != 1 {
			t.Errorf("the stored session holds %q %d times, want once", want, n)
		}
	}
	if got := testutilCounter(t, a, "parley_store_errors_total"); got != 1 {
		t.Errorf("node a store errors = %v, want 1 (the stale write)", got)
	}
}

// TestReplayAfterMerge repeats an id on a node whose session was merged
// into another node's newer record: the replay must be the reply the id
// got, not another turn that the merge put in its place.
func TestReplayAfterMerge(t *testing.T) {
	_, _, ca, _, replies := splitSession(t)
	for _, want := range replies {
		got := ca.ask(want.ID, "repeated")
		if got.Type == typeReply && (!got.Replay || got.Text != want.Text) {
			t.Errorf("repeat of %s = %+v, want the replay of %q", want.ID, got, want.Text)
		}
	}
}

func TestTenantsAreIsolated(t *testing.T) {
	e := newEnv(t, nil)
	c, hello := e.hello(t, "tenant=acme")
	c.ask("m1", "secret plans")
	c.conn.Close(websocket.StatusNormalClosure, "")
	_, other := e.hello(t, "tenant=globex&session="+hello.Session)
	if other.Resumed || other.Session == hello.Session || other.Turns != 0 {
		t.Errorf("other tenant's hello = %+v, want a fresh session, not %s", other, hello.Session)
	}
	_, same := e.hello(t, "tenant=acme&session="+hello.Session)
	if !same.Resumed || same.Turns != 2 {
		t.Errorf("own tenant's hello = %+v, want the session resumed with 2 turns", same)
	}
}

func TestBadInputKeepsConnection(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxTextBytes = 100 })
	c, _ := e.hello(t, "")
	tests := []struct {
		name   string
		typ    websocket.MessageType
		frame  string
		wantID string
		code   string
	}{
		{"malformed JSON", websocket.MessageText, `{"type":"text",`, "", codeBadRequest},
		{"unknown type", websocket.MessageText, `{"type":"shout","id":"b1"}`, "b1", codeBadRequest},
		{"missing id", websocket.MessageText, `{"type":"text","text":"hi"}`, "", codeBadRequest},
		{"empty text", websocket.MessageText, `{"type":"text","id":"b2","text":"  "}`, "b2", codeBadRequest},
		{"oversized text", websocket.MessageText, `{"type":"text","id":"b3","text":"` + strings.Repeat("a", 101) + `"}`, "b3", codeTooLarge},
		{"binary frame", websocket.MessageBinary, `{"type":"text","id":"b4","text":"hi"}`, "b4", codeBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c.t = t
			c.sendRaw(tt.typ, []byte(tt.frame))
			f := c.read()
			if f.Type != typeError || f.Code != tt.code || f.ID != tt.wantID || f.Message == "" {
				t.Errorf("answer to %s = %+v, want error %s for id %q with a message", tt.name, f, tt.code, tt.wantID)
			}
			if f := c.ask("ok-"+tt.name, "are you still there"); f.Type != typeReply {
				t.Errorf("after %s, a good message got %+v, want a reply", tt.name, f)
			}
		})
	}
}

func TestOversizedFrameCloses1009(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxFrameBytes = 1024 })
	c, _ := e.hello(t, "")
	c.sendRaw(websocket.MessageText, []byte(`{"type":"text","id":"x","text":"`+strings.Repeat("a", 2000)+`"}`))
	if code, _ := c.closeStatus(); code != websocket.StatusMessageTooBig {
		t.Errorf("close status = %v, want %v", code, websocket.StatusMessageTooBig)
	}
}

func TestRateLimitedWithRetryAfter(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.SessionRate, c.SessionBurst = 0.5, 1 })
	c, _ := e.hello(t, "")
	if f := c.ask("m1", "one"); f.Type != typeReply {
		t.Fatalf("first message = %+v, want a reply", f)
	}
	f := c.ask("m2", "two")
	if f.Type != typeError || f.Code != codeRateLimited || f.ID != "m2" || f.RetryAfterMS <= 0 || f.RetryAfterMS > 2000 {
		t.Errorf("second message = %+v, want rate_limited for m2 with retry_after_ms in (0, 2000]", f)
	}
}

// gateModel answers only once released, so a test controls the queue.
type gateModel struct{ release chan struct{} }

func (m gateModel) Complete(ctx context.Context, prompts [][]Message) ([]Completion, error) {
	select {
	case <-m.release:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	out := make([]Completion, len(prompts))
	for i := range out {
		out[i] = Completion{Text: "ok", Service: time.Millisecond}
	}
	return out, nil
}

func TestOverloadShedsWithRetryAfter(t *testing.T) {
	const interval = 60 * time.Millisecond
	release := make(chan struct{})
	e := newEnvWith(t, &ctxstore.Memory{}, gateModel{release}, func(c *Config) {
		c.Batch.MaxInFlight, c.Batch.MaxSize = 1, 1
		c.AdmitTarget, c.AdmitInterval = time.Millisecond, interval
		// The detector's timing, not the backstop's: a model that answers
		// nothing makes the expected wait grow with the clock.
		c.AdmitMaxWait = interval
	})
	defer close(release)
	// One message occupies the model; the rest queue behind it. Once the
	// queue has stood for an interval, new messages are shed. Messages go
	// out a quarter interval apart; each client's first frame back is read
	// as it comes, so that the time a shed reached its client bounds from
	// above the time the server decided it.
	clients := make([]*client, 40)
	for i := range clients {
		clients[i], _ = e.hello(t, "")
	}
	type answer struct {
		client int
		at     time.Time
		data   []byte
	}
	ctx, cancel := context.WithCancel(context.Background())
	answers := make(chan answer, len(clients))
	var readers sync.WaitGroup
	var first time.Time
	for i, c := range clients {
		if i == 0 {
			first = time.Now()
		}
		c.text("m1", "queue me")
		readers.Go(func() {
			if _, data, err := c.conn.Read(ctx); err == nil { // cancel closes c, which is fine
				answers <- answer{i, time.Now(), data}
			}
		})
		time.Sleep(interval / 4)
	}
	time.Sleep(interval) // for the last sheds to arrive
	cancel()
	readers.Wait()
	close(answers)
	var shed []answer
	for a := range answers {
		var f Frame
		if err := json.Unmarshal(a.data, &f); err != nil {
			t.Fatal(err)
		}
		// A refusal by the detector says at least the interval; one by the
		// wait line (others were refused first) at least the target and
		// as much as the line expects, up to 10 intervals and a tenth
		// (see backpressure.Line).
		lo, hi := interval.Milliseconds(), 11*interval.Milliseconds()
		if strings.Contains(f.Message, "wait their turn") {
			lo = 1 // the target, 1 ms
		}
		if f.Type != typeError || f.Code != codeOverloaded || f.RetryAfterMS < lo || f.RetryAfterMS > hi || f.ID != "m1" {
			t.Errorf("client %d got %+v, want overloaded for m1 with retry_after_ms in [%d, %d]", a.client, f, lo, hi)
		}
		shed = append(shed, a)
	}
	if len(shed) == 0 {
		t.Fatal("no client was shed")
	}
	// Nothing may be shed before the queue has stood for an interval. The
	// queue began no earlier than the first message was sent, and a shed
	// was decided no later than its client saw it; a loaded machine can
	// only delay messages, never bring a shed earlier. Clients 0 (to the
	// model) and 1 (an empty queue) are never shed, whatever the timing.
	earliest := slices.MinFunc(shed, func(a, b answer) int { return a.at.Compare(b.at) })
	if since := earliest.at.Sub(first); since < interval || earliest.client < 2 {
		t.Errorf("client %d was shed %v after the first message, want no shed before an interval (%v), and never client 0 or 1",
			earliest.client, since, interval)
	}
}

// busyServer is a server for admission tests (target 100 ms, interval
// 500 ms) whose model has slots call slots of size prompts, all busy, with
// the last dispatch at dispatched and queued prompts waiting.
func busyServer(t *testing.T, slots, size int, dispatched time.Time, queued int64) *Server {
	e := newEnv(t, func(c *Config) {
		c.AdmitTarget, c.AdmitInterval = 100*time.Millisecond, 500*time.Millisecond
		c.Batch.MaxInFlight, c.Batch.MaxSize = slots, size
	})
	s := e.srv
	s.lastDispatch.Store(dispatched.UnixNano())
	s.queued.Store(queued)
	s.inFlight.Store(int64(slots))
	t.Cleanup(func() { s.queued.Store(0); s.inFlight.Store(0) })
	return s
}

func TestAdmitBackstopRefusesAFlood(t *testing.T) {
	now := time.Now()
	// Four slots of ten prompts, calls of 40 ms: the model takes 1000
	// prompts a second. 300 wait (0.3 s, the default AdmitMaxWait halfway
	// between target and interval): admitted. Then 310 (0.31 s), and a
	// flood makes it 1000 (1 s): refused.
	s := busyServer(t, 4, 10, now, 300)
	s.callTime.Store(int64(40 * time.Millisecond))
	if got := s.expectedWait(now); got != 300*time.Millisecond {
		t.Errorf("expectedWait with 300 queued at 1000/s = %v, want 300ms", got)
	}
	if err := s.admit("k", new(backpressure.Ticket), now); err != nil {
		t.Errorf("admit with a 0.3 s queue = %v, want nil (CoDel tolerates it for an interval)", err)
	}
	s.queued.Store(310)
	if err := s.admit("k", new(backpressure.Ticket), now); err == nil {
		t.Error("admit with a 0.31 s queue = nil, want overloaded (over AdmitMaxWait)")
	}
	s.queued.Store(1000)
	err := s.admit("k", new(backpressure.Ticket), now)
	re, ok := errors.AsType[*requestError](err)
	if !ok || re.code != codeOverloaded || re.retryAfter < 500*time.Millisecond || re.retryAfter >= time.Second {
		t.Errorf("admit with a 1 s queue = %v, want overloaded with retry-after in [0.5s, 1s)", err)
	}
	// A part-filled batch waits a whole slot: 1001 prompts need 101 calls.
	s.queued.Store(1001)
	if got := s.expectedWait(now); got != 1010*time.Millisecond {
		t.Errorf("expectedWait with 1001 queued = %v, want 1.01s", got)
	}
	// With a call slot free, the queue goes to the model at once,
	// whatever the calls take.
	s.inFlight.Store(0)
	if got := s.expectedWait(now); got != 0 {
		t.Errorf("expectedWait with a free slot = %v, want the last dispatch's wait (0)", got)
	}
}

// TestAdmitQuietServer: on a server that has been quiet, one prompt queued
// behind a busy call slot waits for that call, not for the second or so
// the recent dispatch count (one prompt) would suggest, and is admitted;
// a model stuck for longer than the interval is still seen as stuck.
func TestAdmitQuietServer(t *testing.T) {
	now := time.Now()
	s := busyServer(t, 1, 4, now.Add(-50*time.Millisecond), 1)
	s.noteCallTime(200 * time.Millisecond) // the one call so far
	if got := s.expectedWait(now); got != 200*time.Millisecond {
		t.Errorf("expectedWait of one prompt behind a 200 ms call = %v, want 200ms", got)
	}
	if err := s.admit("k", new(backpressure.Ticket), now); err != nil {
		t.Errorf("admit on a quiet server = %v, want nil", err)
	}
	later := now.Add(time.Second) // no dispatch for 1.05 s
	if got := s.expectedWait(later); got != 1050*time.Millisecond {
		t.Errorf("expectedWait with the model stuck for 1.05 s = %v, want 1.05s", got)
	}
	if err := s.admit("k", new(backpressure.Ticket), later); err == nil {
		t.Error("admit with the model stuck for over an interval = nil, want overloaded")
	}
}

// TestQuietServerQueuesBehindABusyCall: on a server that has made one model
// call, messages that queue behind it (one call slot) are answered, not
// shed. Counting recent dispatches instead of timing the model's calls,
// once a 250 ms slot boundary had passed, read one prompt waiting ahead of
// a message as a second's wait and refused the message.
func TestQuietServerQueuesBehindABusyCall(t *testing.T) {
	model := newSim(t, SimConfig{Latency: 300 * time.Millisecond, Seed: 1}) // sigma 0: every call 300 ms
	e := newEnvWith(t, &ctxstore.Memory{}, model, func(c *Config) {
		c.Batch.MaxInFlight, c.Batch.MaxSize = 1, 1
		c.AdmitTarget, c.AdmitInterval = 100*time.Millisecond, 500*time.Millisecond
	})
	var clients [3]*client
	for i := range clients {
		clients[i], _ = e.hello(t, "")
	}
	clients[0].text("m1", "first in")
	// The others arrive while the first call runs, or (on a slow machine)
	// later; either way each waits at most a call or two.
	time.Sleep(260 * time.Millisecond)
	clients[1].text("m1", "right behind")
	clients[2].text("m1", "behind that")
	for i, c := range clients {
		if f := c.read(); f.Type != typeReply {
			t.Errorf("client %d: %+v, want a reply", i, f)
		}
	}
}

func TestNoteCallTime(t *testing.T) {
	var s Server
	s.noteCallTime(160 * time.Millisecond)
	if got := time.Duration(s.callTime.Load()); got != 160*time.Millisecond {
		t.Fatalf("after one call: %v, want 160ms", got)
	}
	for range 200 {
		s.noteCallTime(320 * time.Millisecond)
	}
	if got := time.Duration(s.callTime.Load()); got < 319*time.Millisecond || got > 320*time.Millisecond {
		t.Errorf("after 200 calls of 320 ms: %v, want about 320ms", got)
	}
	s.noteCallTime(320*time.Millisecond + 16*time.Millisecond*10) // one slow call moves it a sixteenth of the way
	if got := time.Duration(s.callTime.Load()); got < 329*time.Millisecond || got > 330*time.Millisecond {
		t.Errorf("after one call of 480 ms: %v, want about 330ms", got)
	}
	// A straggler of 30 s counts as four times the average: 330 ms + 3 x
	// 330 / 16.
	s.noteCallTime(30 * time.Second)
	if got := time.Duration(s.callTime.Load()); got < 391*time.Millisecond || got > 392*time.Millisecond {
		t.Errorf("after a 30 s straggler: %v, want about 391.9ms", got)
	}
}

// TestCallTimeIgnoresFallbacks: answers given by the fallback (the model
// failing, or the breaker open) are instant and do not make the model look
// faster to admission.
func TestCallTimeIgnoresFallbacks(t *testing.T) {
	e := newEnvWith(t, &ctxstore.Memory{}, failingModel{}, func(c *Config) {
		c.Guard = backpressure.GuardConfig[[]Completion]{MaxAttempts: 1, TripAfter: 1, OpenFor: time.Hour}
	})
	e.srv.callTime.Store(int64(400 * time.Millisecond))
	c, _ := e.hello(t, "")
	for _, id := range []string{"m1", "m2", "m3"} { // failed, then refused by the open breaker
		if f := c.ask(id, "anyone home"); !f.Fallback {
			t.Fatalf("%s: %+v, want the fallback", id, f)
		}
	}
	if got := time.Duration(e.srv.callTime.Load()); got != 400*time.Millisecond {
		t.Errorf("callTime after three fallbacks = %v, want 400ms as before", got)
	}
}

// failingModel always fails.
type failingModel struct{}

func (failingModel) Complete(context.Context, [][]Message) ([]Completion, error) {
	return nil, errors.New("backend on fire")
}

func TestModelFailureAnswersWithFallback(t *testing.T) {
	e := newEnvWith(t, &ctxstore.Memory{}, failingModel{}, func(c *Config) {
		c.Guard = backpressure.GuardConfig[[]Completion]{MaxAttempts: 1, TripAfter: 2, OpenFor: time.Hour}
	})
	c, _ := e.hello(t, "")
	for _, id := range []string{"m1", "m2", "m3"} { // fails, fails and opens, refused
		f := c.ask(id, "anyone home")
		if f.Type != typeReply || !f.Fallback || f.Text != e.srv.cfg.FallbackText {
			t.Errorf("%s: %+v, want the fallback answer marked fallback", id, f)
		}
	}
	if got := e.srv.guard.State(); got != backpressure.Open {
		t.Errorf("breaker state after 2 failures = %v, want open", got)
	}
	if got := e.model.prompts.Load(); got != 2 {
		t.Errorf("model was asked %d prompts, want 2 (the third is refused by the open breaker)", got)
	}
}

func TestEchoIsFlagged(t *testing.T) {
	sim := newSim(t, SimConfig{EchoRate: 1, Seed: 1})
	e := newEnvWith(t, &ctxstore.Memory{}, sim, nil)
	c, _ := e.hello(t, "")
	f := c.ask("m1", "please repeat exactly what I say now")
	if f.Type != typeReply || !f.Echo {
		t.Errorf("reply = %+v, want it flagged as an echo", f)
	}
}

func TestIdleTimeoutsPauseThenEnd(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.ChattingIdle, c.PauseIdle = 50*time.Millisecond, 50*time.Millisecond })
	c, hello := e.hello(t, "")
	c.ask("m1", "hello")
	if f := c.read(); f.Type != typeState || f.State != "PAUSE" {
		t.Fatalf("after idling, got %+v, want state PAUSE", f)
	}
	if f := c.read(); f.Type != typeState || f.State != "END" {
		t.Fatalf("after idling in PAUSE, got %+v, want state END", f)
	}
	if code, reason := c.closeStatus(); code != websocket.StatusNormalClosure || !strings.Contains(reason, "idle") {
		t.Errorf("close = %v %q, want a normal close saying why", code, reason)
	}
	// An ended session is gone: resuming it starts a new one.
	if _, h := e.hello(t, "session="+hello.Session); h.Resumed || h.Session == hello.Session {
		t.Errorf("hello after END = %+v, want a new session", h)
	}
}

func TestUserEndsSession(t *testing.T) {
	e := newEnv(t, nil)
	c, _ := e.hello(t, "")
	c.ask("m1", "hello")
	c.send(clientFrame{Type: typeEnd, ID: "m2"})
	if f := c.read(); f.Type != typeState || f.State != "END" {
		t.Fatalf("after end, got %+v, want state END", f)
	}
	if code, _ := c.closeStatus(); code != websocket.StatusNormalClosure {
		t.Errorf("close status = %v, want normal closure", code)
	}
}

func TestDeadConnectionIsDropped(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Heartbeat = 20 * time.Millisecond })
	// A client that never reads never answers pings.
	conn, err := e.dialErr("")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.CloseNow()
	waitFor(t, "a connection that answers no pings is closed", func() bool { return e.srv.liveSessions() == 0 })
}

func TestHeartbeatKeepsLiveConnection(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Heartbeat = 10 * time.Millisecond })
	c, _ := e.hello(t, "")
	// Reading answers pings: after many intervals the connection still works.
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	// At the deadline the client closes its connection, which may be in
	// the middle of answering a ping: then Read's error is that of the
	// pong write, not the deadline's. What matters is that Read lasted
	// until the deadline.
	if _, _, err := c.conn.Read(ctx); ctx.Err() == nil {
		t.Fatalf("Read = %v before the deadline, want nothing until the deadline", err)
	}
	// The timed-out Read closed the client's side; the server must not
	// have declared it dead before that.
	if got := testutilCounter(t, e, "parley_dead_connections_total"); got != 0 {
		t.Errorf("dead connections = %v, want 0", got)
	}
}

func TestDrainAnswersAcceptedMessagesAndStoresSessions(t *testing.T) {
	sim := newSim(t, SimConfig{Latency: 100 * time.Millisecond, Seed: 1})
	cold := &ctxstore.Memory{}
	e := newEnvWith(t, cold, sim, nil)
	const n = 20
	clients := make([]*client, n)
	ids := make([]string, n)
	for i := range clients {
		var h Frame
		clients[i], h = e.hello(t, "")
		ids[i] = h.Session
		clients[i].text("m1", "answer me before you go")
	}
	// Shutdown starts while the model works on every message.
	time.Sleep(20 * time.Millisecond)
	done := make(chan struct{})
	go func() { e.stop(t); close(done) }()
	for i, c := range clients {
		f := c.read()
		if f.Type != typeReply || f.ID != "m1" {
			t.Errorf("client %d: got %+v during drain, want the reply to m1", i, f)
		}
		if code, _ := c.closeStatus(); code != websocket.StatusGoingAway {
			t.Errorf("client %d: close status %v, want going away", i, code)
		}
	}
	<-done
	for _, id := range ids {
		data, _, err := cold.Load(context.Background(), ctxstore.Key{Tenant: "default", ID: id})
		if err != nil || len(data) == 0 {
			t.Errorf("session %s not in the cold tier after drain: %v", id, err)
		}
	}
	// A new connection during the drain's aftermath is refused cleanly.
	if conn, err := e.dialErr(""); err == nil {
		conn.CloseNow()
		t.Error("dial after shutdown succeeded, want a refusal")
	}
}

func TestSubprotocolRequired(t *testing.T) {
	e := newEnv(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, e.url, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &client{t: t, conn: conn}
	if code, _ := c.closeStatus(); code != websocket.StatusProtocolError {
		t.Errorf("close without subprotocol = %v, want %v", code, websocket.StatusProtocolError)
	}
}

func TestBadQueryRejected(t *testing.T) {
	e := newEnv(t, nil)
	resp, err := http.Get(e.hs.URL + "/ws?tenant=a:b")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("GET /ws?tenant=a:b = %d, want 400", resp.StatusCode)
	}
}

func TestMetricsAndHealth(t *testing.T) {
	e := newEnv(t, nil)
	c, _ := e.hello(t, "")
	c.ask("m1", "count me")
	for path, want := range map[string]string{
		"/healthz": "ok",
		"/readyz":  "ready",
		"/metrics": "process_resident_memory_bytes",
		"/":        "<title>parley chat</title>",
	} {
		resp, err := http.Get(e.hs.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), want) {
			t.Errorf("GET %s = %d, body without %q", path, resp.StatusCode, want)
		}
	}
	if got := testutilCounter(t, e, `parley_turns_total{outcome="model"}`); got != 1 {
		t.Errorf("parley_turns_total{outcome=model} = %v, want 1", got)
	}
}

func TestRepliesNeverCrossSessions(t *testing.T) {
	e := newEnv(t, nil)
	var wg sync.WaitGroup
	for i := range 30 {
		c, h := e.hello(t, "")
		wg.Go(func() {
			for j := range 10 {
				id := h.Session + "-" + string(rune('a'+j))
				f := c.ask(id, "session "+h.Session+" asks "+string(rune('a'+i)))
				if f.ID != id || !strings.Contains(f.Text, "turn") {
					t.Errorf("session %s got %+v for %s", h.Session, f, id)
				}
			}
		})
	}
	wg.Wait()
}

// testutilCounter reads one sample from /metrics.
func testutilCounter(t *testing.T, e *testEnv, series string) float64 {
	t.Helper()
	resp, err := http.Get(e.hs.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for line := range strings.Lines(string(body)) {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			var f float64
			if err := json.Unmarshal([]byte(strings.TrimSpace(v)), &f); err != nil {
				t.Fatalf("metric %s = %q: %v", series, v, err)
			}
			return f
		}
	}
	return 0
}

// TestNewRejectsNegativeConfig checks that a negative size or duration is
// refused with an error naming the field, instead of failing later.
func TestNewRejectsNegativeConfig(t *testing.T) {
	sim := newSim(t, SimConfig{Latency: time.Millisecond, Seed: 1})
	store, err := ctxstore.New(&ctxstore.Memory{}, ctxstore.Config{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close(context.Background()) })
	for name, edit := range map[string]func(*Config){
		"DedupWindow":   func(c *Config) { c.DedupWindow = -1 },
		"QueueSize":     func(c *Config) { c.QueueSize = -8 },
		"Heartbeat":     func(c *Config) { c.Heartbeat = -time.Second },
		"MaxFrameBytes": func(c *Config) { c.MaxFrameBytes = -1 },
	} {
		cfg := Config{Model: sim, Store: store, Logger: quietLogger()}
		edit(&cfg)
		srv, err := New(cfg)
		if err == nil {
			srv.Shutdown(context.Background())
			t.Errorf("%s negative: New succeeded", name)
			continue
		}
		if !strings.Contains(err.Error(), "Config."+name) {
			t.Errorf("%s negative: error %q does not name the field", name, err)
		}
	}
}
