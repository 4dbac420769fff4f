package server

import (
	"bufio"
	"net"
	"net/http"
)

// connBufferSize is the size of each WebSocket connection's read and write
// buffers. Chat frames are a few hundred bytes; bigger ones pass through.
const connBufferSize = 512

// upgradeWriter is the http.ResponseWriter handed to a WebSocket library
// that hijacks the connection (coder/websocket.Accept). It changes two
// things, both for a server with many connections:
//
//   - Smaller buffers. The library keeps the 4 KiB reader and writer that
//     net/http's Hijack returns for the connection's whole life: 8 KiB per
//     mostly idle chat connection, 80 MB at 10k connections. With 512 bytes
//     each it is an eighth of that.
//   - The 101 Switching Protocols response goes out with the first frame
//     (the server's hello) in one write. net/http would write it by itself
//     during Hijack: a system call of its own on the server, and a wake-up
//     and a read of its own on the client, for every connection.
//
// A handler whose work between the handshake and its first frame may
// block (on a store, say) calls [upgradeWriter.flush] first, so that the
// client is not kept waiting for the 101.
type upgradeWriter struct {
	http.ResponseWriter
	switching bool          // WriteHeader(101) was held back for Hijack
	bw        *bufio.Writer // the connection's writer, once hijacked
}

// WriteHeader holds back a 101 for Hijack to write; other statuses go to
// net/http.
func (w *upgradeWriter) WriteHeader(code int) {
	if code == http.StatusSwitchingProtocols {
		w.switching = true
		return
	}
	w.ResponseWriter.WriteHeader(code)
}

// Hijack hijacks the underlying connection, swaps in a small writer and a
// small reader (the reader unless the client has already sent bytes that
// net/http buffered, which must not be lost) and puts a held-back 101
// response in the writer's buffer, where the first frame's flush sends it.
func (w *upgradeWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return conn, brw, err
	}
	r := brw.Reader
	if r.Buffered() == 0 {
		r = bufio.NewReaderSize(conn, connBufferSize)
	}
	bw := bufio.NewWriterSize(conn, connBufferSize)
	if w.switching {
		// net/http wrote nothing: the status line and headers are ours,
		// less those a 1xx response must not carry (as net/http does).
		bw.WriteString("HTTP/1.1 101 Switching Protocols\r\n")
		w.Header().WriteSubset(bw, noInformationalHeaders)
		bw.WriteString("\r\n")
	}
	w.bw = bw
	return conn, bufio.NewReadWriter(r, bw), nil
}

// noInformationalHeaders are the headers left out of a 101 response.
var noInformationalHeaders = map[string]bool{"Content-Length": true, "Transfer-Encoding": true, "Trailer": true}

// flush sends a held-back 101 response now, before the first frame. The
// connection must be hijacked and not yet in use.
func (w *upgradeWriter) flush() error {
	if w.bw == nil {
		return nil
	}
	return w.bw.Flush()
}

// Unwrap gives http.ResponseController the underlying ResponseWriter.
func (w *upgradeWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
