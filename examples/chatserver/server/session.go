package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"log/slog"
	"net/http"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/parley-go/parley/backpressure"
	"github.com/parley-go/parley/ctxstore"
	"github.com/parley-go/parley/fsm"
	"github.com/parley-go/parley/ring"
)

// validName matches the session ids and tenant names the server accepts.
var validName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// Record slots the server keeps: the answered-id window, and the number of
// turns ever appended (the window keeps only the latest).
const (
	dedupSlot = "dedup"
	turnsSlot = "turns"
)

// turnsEver returns the number of turns ever appended to r, as its turns
// slot records it: at least the turns r holds, whatever the slot says.
func turnsEver(r *ctxstore.Record) int64 {
	n := int64(r.Len())
	if v, ok := r.Slot(turnsSlot); ok {
		if c, err := strconv.ParseInt(v, 10, 64); err == nil && c > n {
			n = c
		}
	}
	return n
}

// inbound is one item in a session's ring: a client frame, as read, with
// the time it arrived, or a timeout expiry handed over by the wheel. The
// worker decodes frames, so the reader's stack stays shallow (and small:
// a session's reader is parked for the connection's whole life).
type inbound struct {
	at     time.Time
	data   *bytes.Buffer // from frameBuffers; whoever takes the item puts it back
	binary bool          // a binary frame, which the protocol does not use
	expiry bool          // a timeout came due at at
}

// frameBuffers recycles the buffers client frames are read into: a frame
// lives only until the worker has decoded it.
var frameBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// frame decodes the item's frame and recycles its buffer.
func (it *inbound) frame(maxText int) (clientFrame, error) {
	f, err := parseClientFrame(it.data.Bytes(), maxText)
	frameBuffers.Put(it.data)
	it.data = nil
	return f, err
}

// session is one live conversation on one connection. Its reader (the HTTP
// handler goroutine) pushes frames into in. Its worker consumes them: a
// run of the session's work, one at a time (see [session.kick]), which owns
// every field below the line and is the only writer of data frames, so a
// session's replies are ordered and cannot cross sessions.
//
// The worker is not a goroutine parked for the session's whole life: a run
// starts when work arrives, hands a prompt to the batcher and ends, and the
// model's answer starts the next run. While the model works, a session
// holds no goroutine but its reader.
type session struct {
	srv   *Server
	key   ctxstore.Key
	conn  *websocket.Conn
	in    *ring.Buffer[inbound]
	entry fsm.Entry // the session's deadline in the server's wheel
	// stored is closed once the worker has stored the session for the
	// last time, done once it has also let go of the connection.
	stored, done chan struct{}
	// replaced is set when another connection takes the session over.
	replaced atomic.Bool
	// pendingExpiry holds an expiry (Unix ns) the wheel could not queue
	// because the ring was full; the worker picks it up.
	pendingExpiry atomic.Int64
	// running is set while a run of the worker exists, including while it
	// waits for the model, and from open until start, so that a drain or
	// a takeover of a session still being opened starts no run on it;
	// closing once in is closed.
	running, closing atomic.Bool
	// outdated is set when the cold tier refused one of the session's
	// writes as stale: another node wrote it since. The next save merges.
	outdated atomic.Bool
	// runFn is ss.run, made once: a method value built in kick would be a
	// heap allocation by the reader for every message, and an allocation
	// while the collector marks makes the reader assist it (see kick).
	runFn func()

	// Owned by the worker.
	dlg     dialogue
	rec     *ctxstore.Record
	sums    windowSums // of rec's window, for the context hash
	answers dedup
	turns   int64 // turns ever appended to rec
	// sinceRead counts the turns appended since rec was read from the
	// store: what a merge must carry over into a newer record.
	sinceRead int
	req       modelReq // the turn in flight
	// ticket is the session's place in the server's wait line. attach
	// sets it before the worker runs, and reads an old session's once
	// that is stored; so does detach.
	ticket backpressure.Ticket
	ended  bool // the dialogue reached END
	over   bool // finish has run
}

func (s *Server) serveWS(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	tenant := q.Get("tenant")
	if tenant == "" {
		tenant = "default"
	}
	resume := q.Get("session")
	if !validName.MatchString(tenant) || (resume != "" && !validName.MatchString(resume)) {
		http.Error(w, "server: tenant and session must be 1-64 letters, digits, '-' or '_'", http.StatusBadRequest)
		return
	}
	uw := &upgradeWriter{ResponseWriter: w}
	conn, err := websocket.Accept(uw, r, &websocket.AcceptOptions{Subprotocols: []string{Subprotocol}})
	if err != nil {
		return // Accept has answered the client
	}
	if resume != "" {
		// Resuming reads the store and may wait for another connection
		// to let go of the session: the 101 goes out first. A new
		// session opens at once, and the 101 leaves with the hello.
		if err := uw.flush(); err != nil {
			conn.CloseNow()
			return
		}
	}
	if conn.Subprotocol() != Subprotocol {
		conn.Close(websocket.StatusProtocolError, "the "+Subprotocol+" subprotocol is required")
		return
	}
	conn.SetReadLimit(s.cfg.MaxFrameBytes)
	ctx := r.Context()

	ss, hello, err := s.open(ctx, conn, tenant, resume)
	if err != nil {
		if errors.Is(err, errDraining) {
			conn.Close(websocket.StatusGoingAway, "server is shutting down")
			return
		}
		s.log.Error("opening session", "tenant", tenant, "session", resume, "err", err)
		conn.Close(websocket.StatusInternalError, "cannot open the session")
		return
	}
	ss.write(hello)
	ss.start()
	// The handler returns, so that net/http lets go of its buffers and
	// its deep handshake stack; the session's reader is a new goroutine
	// with a shallow stack.
	go ss.serve()
}

// serve runs the session's connection: the reader loop, with heartbeats,
// until the connection ends; then it waits for the worker to finish.
func (ss *session) serve() {
	defer ss.srv.detach(ss)
	ss.srv.metrics.connections.Inc()
	defer ss.srv.metrics.connections.Dec()
	hb := ss.startHeartbeat()
	ss.read()
	hb.stop()
	ss.shut()
	<-ss.done
}

// open loads or creates the session for a new connection and registers it.
// It returns the hello frame for the client.
func (s *Server) open(ctx context.Context, conn *websocket.Conn, tenant, id string) (*session, Frame, error) {
	now := time.Now()
	ss := s.newSession(conn)
	resumed := false
	if id != "" {
		ss.key = ctxstore.Key{Tenant: tenant, ID: id}
		// A live session is stored when its connection lets go of it, so
		// take it over before reading the record.
		if err := s.attach(ctx, ss); err != nil {
			return nil, Frame{}, err
		}
		rec, err := s.store.Get(ctx, tenant, id)
		switch {
		case err == nil:
			ss.rec = rec
			ss.dlg, err = s.def.Restore(rec.Snapshot())
			if err != nil {
				// The context survives a snapshot we cannot read; the
				// dialogue starts over.
				s.log.Warn("unreadable dialogue snapshot, starting over", "session", ss.key.String(), "err", err)
				ss.dlg = s.def.NewSession(now)
			}
			resumed = !ss.dlg.Terminal()
		case errors.Is(err, ctxstore.ErrNotFound):
		default:
			s.abandon(ss)
			return nil, Frame{}, err
		}
		if !resumed {
			// A new session, under a new id: let go of id, and start
			// afresh with a session that no takeover or drain has seen.
			s.abandon(ss)
			ss = s.newSession(conn)
		}
	}
	if !resumed {
		ss.key = ctxstore.Key{Tenant: tenant, ID: rand.Text()}
		if err := s.attach(ctx, ss); err != nil {
			return nil, Frame{}, err
		}
		ss.rec = s.store.NewRecord(tenant, ss.key.ID)
		ss.rec.SetSystem(s.cfg.SystemPrompt)
		ss.dlg = s.def.NewSession(now)
	}
	ss.req.init(ss)
	ss.answers = newDedup(s.cfg.DedupWindow)
	if v, ok := ss.rec.Slot(dedupSlot); ok {
		ss.answers.load(v)
	}
	ss.turns = turnsEver(ss.rec)
	ss.entry = s.wheel.Add(ss, ss.dlg.Deadline())
	s.metrics.stateEnter(ss.dlg.State())
	return ss, Frame{
		Type:    typeHello,
		Session: ss.key.ID,
		State:   ss.dlg.State().String(),
		Resumed: resumed,
		Turns:   ss.rec.Len(),
	}, nil
}

// newSession returns a session for conn, not yet registered. It holds
// running until [session.start], so that no run of its worker starts
// while open builds it: a drain or a takeover may find it registered.
func (s *Server) newSession(conn *websocket.Conn) *session {
	ss := &session{
		srv:    s,
		conn:   conn,
		in:     ring.New[inbound](s.cfg.QueueSize),
		stored: make(chan struct{}),
		done:   make(chan struct{}),
	}
	ss.runFn = ss.run
	ss.running.Store(true)
	return ss
}

// abandon unregisters a session that open registered but will not serve.
// It never ran, so it has nothing to store: it is stored at once, which
// lets a takeover waiting for it go ahead. A place in the wait line that
// attach handed it is given up: the connection did not resume the session.
func (s *Server) abandon(ss *session) {
	ss.ticket = 0
	close(ss.stored)
	s.detach(ss)
}

// start lets the worker of a session that open built run, once its hello
// is sent, and starts a run if work came in meanwhile: a message cannot,
// but an expiry, a drain or a takeover can.
func (ss *session) start() {
	ss.running.Store(false)
	if ss.in.Len() > 0 || ss.pendingExpiry.Load() != 0 || ss.closing.Load() {
		ss.kick()
	}
}

// read is the reader loop: it moves client frames into the ring until the
// connection fails or closes. A full ring blocks it, so a client that sends
// faster than its session is served is slowed down by TCP itself.
func (ss *session) read() {
	ctx := context.Background() // the connection's end ends the loop
	for {
		typ, r, err := ss.conn.Reader(ctx)
		if err != nil {
			return
		}
		buf := frameBuffers.Get().(*bytes.Buffer)
		buf.Reset()
		if _, err := buf.ReadFrom(r); err != nil {
			frameBuffers.Put(buf)
			return
		}
		item := inbound{at: time.Now(), data: buf, binary: typ != websocket.MessageText}
		if err := ss.in.Push(ctx, item); err != nil {
			// The ring is closed: the server is draining or the session
			// moved to another connection. The message was not accepted,
			// so tell the client to send it elsewhere.
			f, _ := item.frame(ss.srv.cfg.MaxTextBytes)
			ss.write(errorFrame(f.ID, &requestError{
				code: codeUnavailable, msg: "this connection no longer serves the session", retryAfter: time.Second,
			}))
			continue
		}
		ss.kick()
	}
}

// shut stops the session taking messages; the worker answers what it has
// and then finishes: it stores the session and closes the connection.
func (ss *session) shut() {
	ss.in.Close()
	ss.closing.Store(true)
	ss.kick()
}

// drain is shut for a server that is shutting down: the connection is
// closed with status 1001.
func (ss *session) drain() { ss.shut() }

// leftTicket returns the session's place in the wait line once its worker
// has stored it for the last time: zero if it held none or was ended.
func (ss *session) leftTicket() backpressure.Ticket {
	if ss.ended {
		return 0
	}
	return ss.ticket
}

// isStored reports whether the worker has stored the session for the last
// time.
func (ss *session) isStored() bool {
	select {
	case <-ss.stored:
		return true
	default:
		return false
	}
}

// replace is drain for a session that another connection takes over: the
// connection is closed with statusReplaced instead.
func (ss *session) replace() {
	ss.replaced.Store(true)
	ss.shut()
}

// expired is the wheel's callback for this session's deadline. It runs on
// the wheel's goroutine, so it only hands the expiry to the worker.
func (ss *session) expired(at time.Time) {
	if !ss.in.TryPush(inbound{at: at, expiry: true}) {
		// The ring is full (or closed): the worker has work queued and
		// will look here when the ring runs dry.
		ss.pendingExpiry.Store(at.UnixNano())
	}
	ss.kick()
}

// heartbeat pings a session's client every Heartbeat interval and closes
// the connection after two pings in a row go unanswered. It is one object
// per session with its timer (closures over separate variables made six).
type heartbeat struct {
	ss      *session
	mu      sync.Mutex
	stopped bool
	missed  int
	t       *time.Timer
}

// startHeartbeat starts pinging ss's client; stop ends it.
func (ss *session) startHeartbeat() *heartbeat {
	hb := &heartbeat{ss: ss}
	hb.mu.Lock() // ping reads t under the lock, however soon it fires
	hb.t = time.AfterFunc(ss.srv.cfg.Heartbeat, hb.ping)
	hb.mu.Unlock()
	return hb
}

// ping runs on the timer: it pings and waits for the pong (at most an
// interval), then arms the next ping or gives up on the connection.
func (hb *heartbeat) ping() {
	ss := hb.ss
	every := ss.srv.cfg.Heartbeat
	ctx, cancel := context.WithTimeout(context.Background(), every)
	err := ss.conn.Ping(ctx)
	cancel()
	hb.mu.Lock()
	defer hb.mu.Unlock()
	if hb.stopped {
		return
	}
	if err == nil {
		hb.missed = 0
		hb.t.Reset(every)
		return
	}
	hb.missed++
	if hb.missed >= 2 {
		ss.logf(slog.LevelInfo, "closing dead connection", "missed_pongs", hb.missed)
		ss.srv.metrics.deadConns.Inc()
		ss.conn.CloseNow()
		return
	}
	hb.t.Reset(0) // the wait for the pong already took one interval
}

// stop ends the pings; a ping under way finds it stopped.
func (hb *heartbeat) stop() {
	hb.mu.Lock()
	hb.stopped = true
	hb.t.Stop()
	hb.mu.Unlock()
}

// logf logs msg with the session's key and args.
func (ss *session) logf(level slog.Level, msg string, args ...any) {
	ss.srv.log.Log(context.Background(), level, msg, append([]any{"session", ss.key.String()}, args...)...)
}

// write sends f to the client. A failed write means the connection is
// going away; the reader notices and ends the session, so the error needs
// no handling here. A client that stops reading blocks the write until
// the heartbeat gives up on it and closes the connection.
func (ss *session) write(f Frame) {
	e := frameEncoders.Get().(*frameEncoder)
	defer e.release()
	data, err := e.encode(f)
	if err != nil {
		ss.logf(slog.LevelError, "encoding frame", "err", err)
		return
	}
	ss.writeRaw(data)
}

func (ss *session) writeRaw(data []byte) {
	ss.conn.Write(context.Background(), websocket.MessageText, data)
}
