package main

import (
	"context"
	"io"
	"log/slog"
	"math"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/parley-go/parley/ctxstore"
	"github.com/parley-go/parley/examples/chatserver/server"
)

// TestSmoke runs a small load against the real chat server on a loopback
// port, in process, and checks that every turn is answered once, by the
// right session.
func TestSmoke(t *testing.T) {
	t.Parallel()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	store, err := ctxstore.New(&ctxstore.Memory{}, ctxstore.Config{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	model, err := server.NewSimModel(server.SimConfig{Latency: 20 * time.Millisecond, Sigma: 0.2, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Config{Model: model, Store: store, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		hs.Config.Shutdown(ctx)
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("server Shutdown = %v", err)
		}
		hs.Close()
		if err := store.Close(ctx); err != nil {
			t.Errorf("store Close = %v", err)
		}
	})

	cfg := Config{
		URL:      "ws" + strings.TrimPrefix(hs.URL, "http") + "/ws",
		Sessions: 200,
		Turns:    5,
		Ramp:     200 * time.Millisecond,
		Timeout:  20 * time.Second,
		Retries:  100,
	}
	sum, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Run = %v", err)
	}
	t.Log(sum.String())
	if sum.Lost != 0 || sum.Dup != 0 || sum.Crossed != 0 {
		t.Errorf("lost=%d dup=%d crossed=%d, want all 0", sum.Lost, sum.Dup, sum.Crossed)
	}
	if sum.Sessions != 200 || sum.Turns != 200*5 || sum.Errors != 0 {
		t.Errorf("sessions=%d turns=%d errors=%d (%q), want 200, 1000, 0",
			sum.Sessions, sum.Turns, sum.Errors, sum.ErrorSamples)
	}
	if math.IsNaN(sum.ServerRSSMB) || sum.ServerRSSMB <= 0 {
		t.Errorf("server_rss_mb = %v (%v), want the server's resident memory", sum.ServerRSSMB, sum.RSSErr)
	}
}
