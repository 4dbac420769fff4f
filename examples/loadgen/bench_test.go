package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/coder/websocket"
)

// echoHandler is a lean parley.v1 server for benchmarks: it answers each
// message at once, reusing its buffers, so that the load generator's own
// cost dominates what the benchmark measures.
func echoHandler(w http.ResponseWriter, r *http.Request) {
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{subprotocol}})
	if err != nil {
		return
	}
	defer c.CloseNow()
	ctx := context.Background()
	c.Write(ctx, websocket.MessageText, []byte(`{"type":"hello","session":"b","state":"HELLO","resumed":false,"turns":0}`))
	var in, out bytes.Buffer
	for {
		_, rd, err := c.Reader(ctx)
		if err != nil {
			return
		}
		in.Reset()
		if _, err := in.ReadFrom(rd); err != nil {
			return
		}
		msg := in.Bytes()
		if bytes.Contains(msg, []byte(`"type":"end"`)) {
			c.Close(websocket.StatusNormalClosure, "ended")
			return
		}
		i := bytes.Index(msg, []byte(`"id":"`)) + len(`"id":"`)
		j := i + bytes.IndexByte(msg[i:], '"')
		out.Reset()
		out.WriteString(`{"type":"reply","id":"`)
		out.Write(msg[i:j])
		out.WriteString(`","text":"Here is an answer.","state":"CHATTING","model_ms":0.1,"queue_ms":0.1}`)
		if c.Write(ctx, websocket.MessageText, out.Bytes()) != nil {
			return
		}
	}
}

// BenchmarkRun measures whole runs against an in-process server that
// answers at once; one op is one turn. allocs/op counts both sides.
func BenchmarkRun(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(echoHandler))
	defer srv.Close()
	url := "ws" + strings.TrimPrefix(srv.URL, "http")
	for _, sessions := range []int{100, 1000} {
		b.Run("sessions="+strconv.Itoa(sessions), func(b *testing.B) {
			b.ReportAllocs()
			cfg := Config{URL: url, Sessions: sessions, Turns: (b.N + sessions - 1) / sessions, MetricsURL: srv.URL + "/metrics"}
			sum, err := Run(context.Background(), cfg)
			if err != nil {
				b.Fatal(err)
			}
			if want := int64(sessions * cfg.Turns); sum.Turns != want || sum.Errors+sum.Lost+sum.Dup+sum.Crossed != 0 {
				b.Fatalf("summary %s, want %d turns and nothing wrong", &sum, want)
			}
			b.ReportMetric(sum.TurnsPerSec, "turns/s")
			b.ReportMetric(float64(sum.P99)/1e6, "p99-ms")
		})
	}
}
