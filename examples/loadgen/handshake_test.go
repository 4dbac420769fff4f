package main

import (
	"bufio"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// rawServer accepts one connection on a loopback port and hands it, with
// the handshake request read from it, to serve. It returns the ws:// URL
// and a channel that is closed once serve has returned.
func rawServer(t *testing.T, serve func(conn net.Conn, req *http.Request)) (string, <-chan struct{}) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer ln.Close()
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		req, err := http.ReadRequest(bufio.NewReader(conn))
		if err != nil {
			t.Errorf("reading the handshake request: %v", err)
			return
		}
		serve(conn, req)
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return "ws://" + ln.Addr().String() + "/ws", done
}

// acceptKey is the Sec-WebSocket-Accept answer to a handshake's key.
func acceptKey(key string) string {
	h := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(h[:])
}

func dialWith(ctx context.Context, url string) (*websocket.Conn, error) {
	client := &http.Client{Transport: &upgrader{next: http.DefaultTransport}}
	conn, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPClient: client, Subprotocols: []string{subprotocol}})
	return conn, err
}

// switchingResponse is the 101 answer to a chat protocol handshake req.
func switchingResponse(req *http.Request) string {
	return "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Accept: " + acceptKey(req.Header.Get("Sec-WebSocket-Key")) + "\r\n" +
		"Sec-WebSocket-Protocol: " + subprotocol + "\r\n\r\n"
}

// mustDial dials url through the upgrader; the connection is closed when
// the test ends.
func mustDial(t *testing.T, url string) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	conn, err := dialWith(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.CloseNow() })
	return conn
}

// TestUpgraderKeepsBufferedFrame: a server that sends its first frame in
// the same write as the 101 response (the chat server's hello follows the
// handshake at once) must not lose the frame's bytes, which the
// handshake's reader has buffered.
func TestUpgraderKeepsBufferedFrame(t *testing.T) {
	const msg = `{"type":"hello","session":"s1"}`
	url, _ := rawServer(t, func(conn net.Conn, req *http.Request) {
		frame := append([]byte{0x81, byte(len(msg))}, msg...) // FIN, text, unmasked
		if _, err := conn.Write(append([]byte(switchingResponse(req)), frame...)); err != nil {
			t.Errorf("writing: %v", err)
			return
		}
		io.Copy(io.Discard, conn) // until the client closes
	})
	conn := mustDial(t, url)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	typ, data, err := conn.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if typ != websocket.MessageText || string(data) != msg {
		t.Fatalf("first frame = %v %q, want text %q", typ, data, msg)
	}
}

// TestUpgraderSkipsInformational: a 103 Early Hints before the 101 does not
// end the handshake.
func TestUpgraderSkipsInformational(t *testing.T) {
	url, _ := rawServer(t, func(conn net.Conn, req *http.Request) {
		io.WriteString(conn, "HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n")
		io.WriteString(conn, switchingResponse(req))
		io.Copy(io.Discard, conn) // until the client closes
	})
	mustDial(t, url)
}

// TestUpgraderRefused: a server that answers the handshake with an error
// status fails the dial with that status, and the connection is closed.
func TestUpgraderRefused(t *testing.T) {
	closed := make(chan error, 1)
	url, _ := rawServer(t, func(conn net.Conn, _ *http.Request) {
		io.WriteString(conn, "HTTP/1.1 403 Forbidden\r\nContent-Length: 7\r\n\r\nno, sir")
		conn.SetReadDeadline(time.Now().Add(testTimeout))
		_, err := conn.Read(make([]byte, 1))
		closed <- err
	})
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if conn, err := dialWith(ctx, url); err == nil {
		conn.CloseNow()
		t.Fatal("dial succeeded against a 403")
	} else if !strings.Contains(err.Error(), "403") {
		t.Errorf("error %q does not give the status", err)
	}
	if err := <-closed; !errors.Is(err, io.EOF) {
		t.Errorf("server read after the refusal: %v, want EOF (the client closed)", err)
	}
}

// TestUpgraderContext: a server that never answers holds the dial only
// until the context ends, and the connection is closed then.
func TestUpgraderContext(t *testing.T) {
	closed := make(chan error, 1)
	url, _ := rawServer(t, func(conn net.Conn, _ *http.Request) {
		conn.SetReadDeadline(time.Now().Add(testTimeout))
		_, err := conn.Read(make([]byte, 1))
		closed <- err
	})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if conn, err := dialWith(ctx, url); err == nil {
		conn.CloseNow()
		t.Fatal("dial succeeded against a server that never answered")
	} else if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error %v, want the context's deadline", err)
	}
	if err := <-closed; !errors.Is(err, io.EOF) {
		t.Errorf("server read after the timeout: %v, want EOF (the client closed)", err)
	}
}

// recordingTransport records the requests handed to it and refuses them.
type recordingTransport struct{ urls []string }

func (r *recordingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	r.urls = append(r.urls, req.URL.String())
	return nil, errors.New("refused by the test")
}

// TestUpgraderPassesTLS: https requests (wss:// URLs) go to the next
// transport, which does TLS.
func TestUpgraderPassesTLS(t *testing.T) {
	next := &recordingTransport{}
	u := &upgrader{next: next}
	req, _ := http.NewRequest(http.MethodGet, "https://example.invalid/ws", nil)
	if _, err := u.RoundTrip(req); err == nil {
		t.Fatal("RoundTrip succeeded; the next transport refuses")
	}
	if len(next.urls) != 1 || next.urls[0] != "https://example.invalid/ws" {
		t.Errorf("next transport got %q, want the https request", next.urls)
	}
}
