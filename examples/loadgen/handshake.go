package main

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"time"
)

// upgrader is the http.RoundTripper of the sessions' WebSocket handshakes
// over plain ws:// URLs. Each request gets a TCP connection of its own; the
// request is written with [http.Request.Write], the answer read with
// [http.ReadResponse], and on 101 Switching Protocols the connection
// becomes the response body, which is what the WebSocket library asks of
// an http.Client. [http.Transport] does the same through its connection
// pool with two goroutines and 8 KiB of buffers per connection: when 10k
// sessions connect within a second, that cost more of the machine than the
// rest of the load generator. Other schemes (wss://) go to next.
type upgrader struct {
	dialer net.Dialer
	next   http.RoundTripper
}

// handshakeBuffer is the size of the buffers of a handshake: its request
// and response are a few hundred bytes.
const handshakeBuffer = 1 << 10

// RoundTrip implements http.RoundTripper. The request's context bounds
// the whole exchange.
func (u *upgrader) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme != "http" {
		return u.next.RoundTrip(req)
	}
	ctx := req.Context()
	addr := req.URL.Host
	if req.URL.Port() == "" {
		addr = net.JoinHostPort(req.URL.Hostname(), "80")
	}
	conn, err := u.dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	// The context's end fails a write or read blocked in the exchange.
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	resp, err := exchange(conn, req)
	if !stop() {
		// The deadline may be set, or about to be: the connection is of
		// no use any more.
		err = context.Cause(ctx)
	}
	if err != nil {
		conn.Close()
		return nil, err
	}
	return resp, nil
}

// exchange writes req to conn and reads the response. A 101 response's
// body is the connection itself; any other response's body closes the
// connection when it is closed.
func exchange(conn net.Conn, req *http.Request) (*http.Response, error) {
	bw := bufio.NewWriterSize(conn, handshakeBuffer)
	if err := req.Write(bw); err != nil {
		return nil, err
	}
	if err := bw.Flush(); err != nil {
		return nil, err
	}
	br := bufio.NewReaderSize(conn, handshakeBuffer)
	for {
		resp, err := http.ReadResponse(br, req)
		switch {
		case err != nil:
			return nil, err
		case resp.StatusCode == http.StatusSwitchingProtocols:
			resp.Body = &upgradedConn{Conn: conn, br: br}
			return resp, nil
		case resp.StatusCode/100 == 1:
			// Informational (100 Continue, 103 Early Hints): the answer
			// follows, as http.Transport knows.
		default:
			resp.Body = closeConn{resp.Body, conn}
			return resp, nil
		}
	}
}

// upgradedConn is a connection after its handshake: reads take the bytes
// the handshake's reader buffered past the response first (the server may
// send its first frame at once), then read the connection directly.
type upgradedConn struct {
	net.Conn
	br *bufio.Reader // nil once drained
}

func (c *upgradedConn) Read(p []byte) (int, error) {
	if c.br != nil {
		if c.br.Buffered() > 0 {
			return c.br.Read(p)
		}
		c.br = nil
	}
	return c.Conn.Read(p)
}

// closeConn is the body of a response that refused the upgrade: closing it
// closes the connection too.
type closeConn struct {
	io.ReadCloser
	conn net.Conn
}

func (c closeConn) Close() error {
	c.ReadCloser.Close()
	return c.conn.Close()
}
