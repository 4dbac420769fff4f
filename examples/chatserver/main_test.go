package main

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/parley-go/parley/ctxstore"
	"github.com/parley-go/parley/examples/chatserver/server"
)

// startRun runs the command with args plus a loopback port and returns the
// address it listens on and a channel with run's result. Cancelling ctx is
// the SIGTERM of this test.
func startRun(t *testing.T, ctx context.Context, args ...string) (string, <-chan error) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); w.Close() })
	done := make(chan error, 1)
	go func() { done <- run(ctx, append(args, "-addr", "127.0.0.1:0"), w) }()
	lines := bufio.NewScanner(r)
	for lines.Scan() {
		var entry struct{ Msg, Addr string }
		if json.Unmarshal(lines.Bytes(), &entry) == nil && entry.Msg == "listening" {
			go func() {
				for lines.Scan() { // keep the pipe drained
				}
			}()
			return strings.TrimSuffix(strings.TrimPrefix(entry.Addr, "http://"), "/"), done
		}
	}
	t.Fatalf("the server never logged that it listens; run returned %v", <-done)
	return "", nil
}

func TestRunServesAndDrainsToDisk(t *testing.T) {
	dir := t.TempDir()
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	addr, done := startRun(t, ctx, "-data", dir, "-model-latency", "20ms")

	dctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(dctx, "ws://"+addr+"/ws", &websocket.DialOptions{Subprotocols: []string{server.Subprotocol}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	read := func() server.Frame {
		t.Helper()
		_, data, err := c.Read(dctx)
		if err != nil {
			t.Fatal(err)
		}
		var f server.Frame
		if err := json.Unmarshal(data, &f); err != nil {
			t.Fatal(err)
		}
		return f
	}
	hello := read()
	if err := c.Write(dctx, websocket.MessageText, []byte(`{"type":"text","id":"m1","text":"remember parsnips"}`)); err != nil {
		t.Fatal(err)
	}
	if f := read(); f.Type != "reply" || f.ID != "m1" {
		t.Fatalf("got %+v, want the reply to m1", f)
	}

	stop() // SIGTERM
	_, _, err = c.Read(dctx)
	if code := websocket.CloseStatus(err); code != websocket.StatusGoingAway {
		t.Errorf("close status on shutdown = %v (%v), want going away", code, err)
	}
	if err := <-done; err != nil {
		t.Fatalf("run = %v, want a clean shutdown", err)
	}

	// The session is on disk: a fresh store over the same file reads it.
	bolt, err := ctxstore.OpenBolt(filepath.Join(dir, "context.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer bolt.Close()
	store, err := ctxstore.New(bolt, ctxstore.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close(context.Background())
	rec, err := store.Get(context.Background(), "default", hello.Session)
	if err != nil {
		t.Fatalf("session %s after restart: %v", hello.Session, err)
	}
	if rec.Len() != 2 || rec.Turn(0).Text != "remember parsnips" {
		t.Errorf("stored window has %d turns starting %q, want the user's turn and the reply", rec.Len(), rec.Turn(0).Text)
	}
}

func TestFlags(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := run(context.Background(), []string{"-h"}, w); err != nil {
		t.Errorf("run -h = %v, want nil", err)
	}
	w.Close()
	var out strings.Builder
	bufio.NewReader(r).WriteTo(&out)
	for _, flag := range []string{"-addr", "-data", "-redis", "-model-latency", "-model-url", "-heartbeat"} {
		if !strings.Contains(out.String(), flag) {
			t.Errorf("-h output lacks %s", flag)
		}
	}
	w2, _ := os.Open(os.DevNull)
	defer w2.Close()
	if err := run(context.Background(), []string{"-model-echo-rate", "2"}, w2); err == nil {
		t.Error("run with an echo rate of 2 = nil, want an error")
	}
	if err := run(context.Background(), []string{"stray"}, w2); err == nil {
		t.Error("run with a stray argument = nil, want an error")
	}
}
