package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// fakeServer is an in-test parley.v1 server that answers every message and
// can be told to misbehave on chosen turns. It understands the load
// generator's ids ("lg<tag>.<session>.<turn>") so that rules can name a
// session and turn.
type fakeServer struct {
	rules        map[turnKey]fakeRule
	delay        time.Duration // before each reply
	modelMS      float64       // reported in each reply
	subprotocols []string      // offered at accept; nil means parley.v1
	noHello      bool          // start with a state frame instead of hello
	rssBytes     float64       // served as process_resident_memory_bytes

	srv *httptest.Server

	mu    sync.Mutex
	conns map[int]*websocket.Conn // by session, while its handler runs
}

type turnKey struct{ session, turn int }

// fakeRule is what the fake does with one message instead of answering it.
type fakeRule struct {
	drop     bool          // never answer
	dup      bool          // answer twice
	cross    string        // after the answer, also send a reply with this id, in which PREFIX and SELF stand for lg<tag> and the session
	misroute bool          // send the answer to another session's connection
	shed     int           // answer the first shed attempts with an overloaded error
	fail     string        // answer with an error frame of this code
	hangup   bool          // close the connection instead of answering
	slow     time.Duration // wait this long (on top of delay) before answering
}

func newFakeServer(t *testing.T, f *fakeServer) *fakeServer {
	t.Helper()
	f.conns = make(map[int]*websocket.Conn)
	mux := http.NewServeMux()
	mux.HandleFunc("/ws", f.handle)
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, r *http.Request) {
		// The load generator asks for the exposition uncompressed (see
		// fetchRSS); a fake that insists makes the tests that read RSS
		// fail if it stops.
		if enc := r.Header.Get("Accept-Encoding"); enc != "identity" {
			http.Error(w, "Accept-Encoding "+enc+", want identity", http.StatusNotAcceptable)
			return
		}
		fmt.Fprintf(w, "# HELP %[1]s Resident memory size in bytes.\n# TYPE %[1]s gauge\n%[1]s %[2]g\n",
			rssMetric, f.rssBytes)
	})
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

// url is the fake's WebSocket endpoint.
func (f *fakeServer) url() string { return "ws" + strings.TrimPrefix(f.srv.URL, "http") + "/ws" }

// splitTestID parses "lg<tag>.<session>.<turn>" into its parts.
func splitTestID(id string) (prefix string, session, turn int) {
	head, t := cutLast(id)
	prefix, sess := cutLast(head)
	session, _ = strconv.Atoi(sess)
	turn, _ = strconv.Atoi(t)
	return prefix, session, turn
}

func cutLast(s string) (before, after string) {
	i := strings.LastIndexByte(s, '.')
	if i < 0 {
		return "", s
	}
	return s[:i], s[i+1:]
}

func reply(id string, modelMS float64) []byte {
	b, _ := json.Marshal(map[string]any{
		"type": "reply", "id": id, "text": "Here is an answer.", "state": "CHATTING",
		"model_ms": modelMS, "queue_ms": 0.1, "fallback": false, "echo": false, "replay": false,
	})
	return b
}

func errorFrameJSON(id, code string, retryAfterMS int) []byte {
	m := map[string]any{"type": "error", "id": id, "code": code, "message": "refused by the fake"}
	if retryAfterMS > 0 {
		m["retry_after_ms"] = retryAfterMS
	}
	b, _ := json.Marshal(m)
	return b
}

func (f *fakeServer) handle(w http.ResponseWriter, r *http.Request) {
	protos := f.subprotocols
	if protos == nil {
		protos = []string{subprotocol}
	}
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: protos})
	if err != nil {
		return
	}
	defer c.CloseNow()
	if c.Subprotocol() != subprotocol {
		c.Close(websocket.StatusProtocolError, "parley.v1 required")
		return
	}
	ctx := context.Background()
	hello := `{"type":"hello","session":"fake","state":"HELLO","resumed":false,"turns":0}`
	if f.noHello {
		hello = `{"type":"state","state":"CHATTING"}`
	}
	c.Write(ctx, websocket.MessageText, []byte(hello))
	attempts := make(map[int]int)
	session := -1
	defer func() {
		f.mu.Lock()
		delete(f.conns, session)
		f.mu.Unlock()
	}()
	for {
		_, data, err := c.Read(ctx)
		if err != nil {
			return
		}
		var m struct{ Type, ID, Text string }
		if err := json.Unmarshal(data, &m); err != nil {
			c.Write(ctx, websocket.MessageText, errorFrameJSON("", "bad_request", 0))
			continue
		}
		if m.Type == "end" {
			c.Close(websocket.StatusNormalClosure, "session ended")
			return
		}
		prefix, s, turn := splitTestID(m.ID)
		if session < 0 {
			session = s
			f.mu.Lock()
			f.conns[s] = c
			f.mu.Unlock()
		}
		rule := f.rules[turnKey{s, turn}]
		attempts[turn]++
		switch {
		case attempts[turn] <= rule.shed:
			c.Write(ctx, websocket.MessageText, errorFrameJSON(m.ID, "overloaded", 5))
			continue
		case rule.fail != "":
			c.Write(ctx, websocket.MessageText, errorFrameJSON(m.ID, rule.fail, 0))
			continue
		case rule.hangup:
			return
		case rule.drop:
			continue
		}
		time.Sleep(f.delay + rule.slow)
		answer := reply(m.ID, f.modelMS)
		if rule.misroute {
			f.sendToOther(s, answer)
			continue
		}
		c.Write(ctx, websocket.MessageText, answer)
		if rule.dup {
			c.Write(ctx, websocket.MessageText, answer)
		}
		if rule.cross != "" {
			id := strings.NewReplacer("PREFIX", prefix, "SELF", strconv.Itoa(s)).Replace(rule.cross)
			c.Write(ctx, websocket.MessageText, reply(id, f.modelMS))
		}
	}
}

// sendToOther writes frame to the connection of some session other than s
// that still takes it.
func (f *fakeServer) sendToOther(s int, frame []byte) {
	f.mu.Lock()
	var others []*websocket.Conn
	for other, c := range f.conns {
		if other != s {
			others = append(others, c)
		}
	}
	f.mu.Unlock()
	for _, c := range others {
		if c.Write(context.Background(), websocket.MessageText, frame) == nil {
			return
		}
	}
}
