package server

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// recordingListener records the first write of every connection it
// accepts.
type recordingListener struct {
	net.Listener
	mu     sync.Mutex
	firsts [][]byte
}

func (l *recordingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &recordingConn{Conn: c, l: l}, nil
}

type recordingConn struct {
	net.Conn
	l    *recordingListener
	once sync.Once
}

func (c *recordingConn) Write(p []byte) (int, error) {
	c.once.Do(func() {
		c.l.mu.Lock()
		c.l.firsts = append(c.l.firsts, bytes.Clone(p))
		c.l.mu.Unlock()
	})
	return c.Conn.Write(p)
}

// serveRecorded serves h on a listener that records the first write of
// each connection, and returns the listener and its ws:// URL.
func serveRecorded(t *testing.T, h http.Handler) (*recordingListener, string) {
	hs := httptest.NewUnstartedServer(h)
	rec := &recordingListener{Listener: hs.Listener}
	hs.Listener = rec
	hs.Start()
	t.Cleanup(hs.Close)
	return rec, "ws" + strings.TrimPrefix(hs.URL, "http") + "/ws"
}

// TestHandshakeWritesOnce: the 101 response and the hello frame leave the
// server in one write.
func TestHandshakeWritesOnce(t *testing.T) {
	first := firstWrite(t, nil)
	if !strings.HasPrefix(first, "HTTP/1.1 101 Switching Protocols\r\n") || !strings.Contains(first, `"type":"hello"`) {
		t.Errorf("first write = %q, want the 101 response and the hello frame", first)
	}
	for _, h := range []string{"Upgrade: websocket\r\n", "Connection: Upgrade\r\n", "Sec-Websocket-Protocol: " + Subprotocol + "\r\n", "Sec-Websocket-Accept: "} {
		if !strings.Contains(first, h) {
			t.Errorf("101 response lacks %q: %q", h, first)
		}
	}
}

// firstWrite opens a session on a server whose handler is wrapped by wrap
// (when not nil) and returns the server's first write on the connection.
func firstWrite(t *testing.T, wrap func(http.Handler) http.Handler) string {
	e := newEnv(t, nil)
	h := e.srv.Handler()
	if wrap != nil {
		h = wrap(h)
	}
	rec, url := serveRecorded(t, h)
	e.url = url
	e.hello(t, "")
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.firsts) != 1 {
		t.Fatalf("%d connections recorded, want 1", len(rec.firsts))
	}
	return string(rec.firsts[0])
}

// TestHandshake101LeavesOutBodyHeaders: headers a 1xx response must not
// carry stay out of the 101 even when a middleware has set them.
func TestHandshake101LeavesOutBodyHeaders(t *testing.T) {
	first := firstWrite(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "0")
			w.Header().Set("Transfer-Encoding", "chunked")
			w.Header().Set("X-Request-Id", "r1")
			h.ServeHTTP(w, r)
		})
	})
	head, _, _ := strings.Cut(first, "\r\n\r\n")
	head += "\r\n"
	if strings.Contains(head, "Content-Length") || strings.Contains(head, "Transfer-Encoding") {
		t.Errorf("101 response carries body headers: %q", head)
	}
	if !strings.Contains(head, "X-Request-Id: r1\r\n") {
		t.Errorf("101 response lost the middleware's other header: %q", head)
	}
}

// rawUpgrade is a WebSocket handshake request for the chat protocol.
func rawUpgrade(host string) string {
	return "GET /ws HTTP/1.1\r\nHost: " + host + "\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" +
		"Sec-WebSocket-Protocol: " + Subprotocol + "\r\n\r\n"
}

// maskedText is a client text frame carrying payload (under 126 bytes).
func maskedText(payload string) []byte {
	key := [4]byte{1, 2, 3, 4}
	f := append([]byte{0x81, 0x80 | byte(len(payload))}, key[:]...)
	for i := range len(payload) {
		f = append(f, payload[i]^key[i%4])
	}
	return f
}

// readServerFrame reads one unmasked server frame and returns its payload.
func readServerFrame(t *testing.T, r *bufio.Reader) []byte {
	t.Helper()
	var h [2]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		t.Fatalf("reading a frame header: %v", err)
	}
	n := int(h[1] & 0x7f)
	switch n {
	case 126:
		var ext [2]byte
		if _, err := io.ReadFull(r, ext[:]); err != nil {
			t.Fatal(err)
		}
		n = int(binary.BigEndian.Uint16(ext[:]))
	case 127:
		t.Fatal("frame too long for the test")
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(r, p); err != nil {
		t.Fatalf("reading a frame: %v", err)
	}
	return p
}

// TestHandshakeKeepsEarlyFrame: a client that sends its first message in
// the same packet as the handshake (before the 101 arrives) gets it
// answered: the bytes net/http read past the request are not lost with
// its buffer.
func TestHandshakeKeepsEarlyFrame(t *testing.T) {
	e := newEnv(t, nil)
	conn, err := net.Dial("tcp", e.hs.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	req := rawUpgrade(e.hs.Listener.Addr().String())
	if _, err := conn.Write(append([]byte(req), maskedText(`{"type":"text","id":"early","text":"hi there"}`)...)); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(conn)
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %s, want 101", resp.Status)
	}
	for _, want := range []string{typeHello, typeReply} {
		var f Frame
		if err := json.Unmarshal(readServerFrame(t, r), &f); err != nil {
			t.Fatal(err)
		}
		if f.Type != want || want == typeReply && f.ID != "early" {
			t.Fatalf("frame %+v, want %s (for id early)", f, want)
		}
	}
}

// TestHandshakeRefusalPassesThrough: a request the WebSocket library
// refuses gets its error status, not a held-back 101.
func TestHandshakeRefusalPassesThrough(t *testing.T) {
	e := newEnv(t, nil)
	req, _ := http.NewRequest(http.MethodGet, e.hs.URL+"/ws", nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13") // no Sec-WebSocket-Key
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("status %s, want 400", resp.Status)
	}
}

// TestResumeHandshakeDoesNotWaitForTheStore: a client resuming a session
// completes its handshake while the server is still reading the session
// from the store; only the hello waits for it.
func TestResumeHandshakeDoesNotWaitForTheStore(t *testing.T) {
	cold := newGatedCold()
	e := newEnvWith(t, cold, newSim(t, SimConfig{Latency: 5 * time.Millisecond, Seed: 1}), nil)
	conn, err := e.dialErr("session=abc") // its Load waits for release
	if err != nil {
		close(cold.release)
		t.Fatalf("handshake while the store is busy: %v", err)
	}
	c := &client{t: t, conn: conn}
	t.Cleanup(func() { conn.CloseNow() })
	<-cold.loading
	close(cold.release)
	if f := c.read(); f.Type != typeHello || f.Resumed {
		t.Errorf("first frame = %+v, want a hello for a new session", f)
	}
}
