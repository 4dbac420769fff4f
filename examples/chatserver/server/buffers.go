package server

import (
	"bufio"
	"net"
	"net/http"
)

// connBufferSize is the size of each WebSocket connection's read and write
// buffers. Chat frames are a few hundred bytes; bigger ones pass through.
const connBufferSize = 512

// smallBuffers hands a WebSocket library that hijacks the connection
// (coder/websocket.Accept) smaller buffers than net/http's. The library
// keeps the 4 KiB reader and writer that net/http's Hijack returns for the
// connection's whole life: 8 KiB per mostly idle chat connection, 80 MB at
// 10k connections. With 512 bytes each it is an eighth of that.
type smallBuffers struct{ http.ResponseWriter }

// Hijack hijacks the underlying connection and, unless the client has
// already sent bytes that net/http buffered, swaps in small buffers. By
// now net/http has flushed its writer (the 101 response), so nothing is
// lost.
func (w smallBuffers) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil || brw.Reader.Buffered() > 0 || brw.Writer.Buffered() > 0 {
		return conn, brw, err
	}
	return conn, bufio.NewReadWriter(bufio.NewReaderSize(conn, connBufferSize), bufio.NewWriterSize(conn, connBufferSize)), nil
}

// Unwrap gives http.ResponseController the underlying ResponseWriter.
func (w smallBuffers) Unwrap() http.ResponseWriter { return w.ResponseWriter }
