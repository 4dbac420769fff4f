package ctxstore

import (
	"iter"
	"slices"
	"strings"
	"sync/atomic"
)

// Role says who spoke a turn. The zero Role is the empty string, which the
// store keeps as it is.
type Role string

// The roles of the reference dialogue. Hosts may use others.
const (
	RoleSystem    Role = "system"
	RoleUser      Role = "user"
	RoleAssistant Role = "assistant"
)

// Turn is one message in a session's context window. The zero Turn is an
// empty message with no role.
type Turn struct {
	Role   Role
	Text   string
	Tokens int // the turn's size in tokens; Append counts it when <= 0
}

// EstimateTokens is the default token counter: one token per four bytes of
// text, rounded up, the usual rule of thumb for English under BPE
// tokenizers. It is a budget estimate, not a tokenizer; hosts that need
// exact figures set [Window.Count].
func EstimateTokens(text string) int { return (len(text) + 3) / 4 }

// Window bounds a record's context window, so that what is sent with each
// prompt (and kept in memory) stays the same size however long the
// conversation runs. When a new turn would break a bound, the oldest turns
// are dropped; the pinned system prompt and the newest turn never are.
//
// The zero Window uses the defaults given for each field.
type Window struct {
	// MaxTurns is the most turns the window holds, not counting the
	// system prompt. Default 32.
	MaxTurns int
	// MaxTokens is the token budget of the system prompt plus the turns.
	// Default 4096.
	MaxTokens int
	// Count returns the token count of a text. It must be safe for
	// concurrent use. Default [EstimateTokens].
	Count func(text string) int
}

// Window defaults.
const (
	defaultMaxTurns  = 32
	defaultMaxTokens = 4096
)

// withDefaults returns w with its zero fields set to their defaults.
func (w Window) withDefaults() Window {
	if w.MaxTurns <= 0 {
		w.MaxTurns = defaultMaxTurns
	}
	if w.MaxTokens <= 0 {
		w.MaxTokens = defaultMaxTokens
	}
	if w.Count == nil {
		w.Count = EstimateTokens
	}
	return w
}

// defaultWindow serves records whose store set no window (zero Records).
var defaultWindow = Window{}.withDefaults()

// Record is one session's stored state: its key, a sequence number that
// only moves forward, the dialogue state machine's snapshot (opaque bytes),
// a bounded context window of turns with a pinned system prompt, and named
// string slots (a product id, the user's language).
//
// Records come from [Store.NewRecord] and [Store.Get] and go back with
// [Store.Put]. A Record is a private copy: changing it changes nothing in
// the store until Put, and copies share memory until one of them is changed
// (copy on write), so Get costs no copying; the first change to a record
// fresh from Get or Put copies a small header, and its slots on their first
// change; the window's turns are shared, not copied (see turnLog). Copy a
// Record through Get, never by assigning *r: copies made that way share
// changes.
// The zero Record has no key, uses the default Window and cannot be Put. A
// Record is not safe for concurrent use.
type Record struct {
	key   Key
	seq   uint64
	win   *Window
	d     *recData
	owned bool // d belongs to this Record alone and may be changed in place
}

// recData is a record's contents. Once shared (owned by no Record) it is
// never changed again; a Record copies it before its first change. The
// copy is shallow: the snapshot and the strings are immutable, the slots
// are copied on their own first change, and the turns stay in a turnLog
// that versions share.
type recData struct {
	snapshot []byte
	system   Turn
	log      *turnLog // holds the window's turns at log.t[head:head+n]
	head, n  int
	tokens   int  // sum of the turns' Tokens, not counting the system prompt
	dropped  int  // sum of the Tokens of the turns in log before head
	slots    []kv // sorted by name; few, so a slice beats a map
	ownSlots bool // slots belongs to this recData alone
}

// turnLog is an append-only array of turns that the versions of a record
// share, so that appending a turn to a record fresh from Get or Put copies
// nothing. Each version's window is a run of t ending at or below claimed;
// a version may write t[end] only if its run ends at claimed and it moves
// claimed on first. Any other version copies its window to a new log. So a
// written element is never written again, and readers of older versions,
// on any goroutine, only read elements written before those versions were
// made.
//
// A turn dropped from the front of the window stays referenced until its
// log is replaced. A log holds at most MaxTurns + MaxTurns/2 turns (one
// more at least), and an append moves the window to a new log once the
// turns dropped from the current one exceed MaxTokens, so what a record
// holds beyond its window stays within about one more token budget.
type turnLog struct {
	t       []Turn
	claimed atomic.Int64 // t[:claimed] has been written
}

// kv is one named string slot of a record.
type kv struct{ name, value string }

// find returns the index of the named slot, or where it would go.
func (d *recData) find(name string) (int, bool) {
	return slices.BinarySearchFunc(d.slots, name, func(s kv, name string) int { return strings.Compare(s.name, name) })
}

// emptyData stands in for the contents of a zero Record.
var emptyData = &recData{}

// Key returns the record's key.
func (r *Record) Key() Key { return r.key }

// Seq returns the record's sequence number: 0 for a record never Put, and
// one more with each successful Put.
func (r *Record) Seq() uint64 { return r.seq }

// Snapshot returns the state machine snapshot last set, or nil. The caller
// must not modify the returned bytes.
func (r *Record) Snapshot() []byte { return r.data().snapshot }

// SetSnapshot stores a copy of b as the state machine snapshot.
func (r *Record) SetSnapshot(b []byte) { r.own().snapshot = slices.Clone(b) }

// System returns the pinned system prompt, or "".
func (r *Record) System() string { return r.data().system.Text }

// SetSystem pins text as the system prompt. It counts against the token
// budget but is never dropped; older turns are dropped to make room.
func (r *Record) SetSystem(text string) {
	w, d := r.window(), r.own()
	d.system = Turn{Role: RoleSystem, Text: text, Tokens: w.Count(text)}
	d.trim(w)
}

// Append adds t as the newest turn, counting its tokens with the window's
// counter when t.Tokens <= 0, then drops the oldest turns until the window
// fits its bounds again. Append is O(1) amortised.
func (r *Record) Append(t Turn) {
	w, d := r.window(), r.own()
	if t.Tokens <= 0 {
		t.Tokens = w.Count(t.Text)
	}
	d.push(t, w)
	d.trim(w)
}

// Len returns the number of turns in the window.
func (r *Record) Len() int { return r.data().n }

// Turn returns the i'th turn of the window, oldest first. It panics if i
// is out of range [0, Len).
func (r *Record) Turn(i int) Turn {
	d := r.data()
	if i < 0 || i >= d.n {
		panic("ctxstore: Record.Turn index out of range")
	}
	return d.at(i)
}

// Turns returns an iterator over the window's turns, oldest first.
func (r *Record) Turns() iter.Seq[Turn] {
	d := r.data()
	return func(yield func(Turn) bool) {
		for _, t := range d.turns() {
			if !yield(t) {
				return
			}
		}
	}
}

// Tokens returns the tokens of the system prompt plus the window's turns:
// what the window costs in a prompt.
func (r *Record) Tokens() int {
	d := r.data()
	return d.system.Tokens + d.tokens
}

// Slot returns the value of the named slot and whether it is set.
func (r *Record) Slot(name string) (string, bool) {
	d := r.data()
	if i, ok := d.find(name); ok {
		return d.slots[i].value, true
	}
	return "", false
}

// SetSlot sets the named slot to value.
func (r *Record) SetSlot(name, value string) {
	d := r.own()
	d.ownSlotsNow()
	if i, ok := d.find(name); ok {
		d.slots[i].value = value
	} else {
		d.slots = slices.Insert(d.slots, i, kv{name, value})
	}
}

// DeleteSlot removes the named slot.
func (r *Record) DeleteSlot(name string) {
	if _, ok := r.data().find(name); ok {
		d := r.own()
		d.ownSlotsNow()
		i, _ := d.find(name)
		d.slots = slices.Delete(d.slots, i, i+1)
	}
}

// Slots returns an iterator over the slots in name order.
func (r *Record) Slots() iter.Seq2[string, string] {
	slots := r.data().slots
	return func(yield func(string, string) bool) {
		for _, s := range slots {
			if !yield(s.name, s.value) {
				return
			}
		}
	}
}

func (r *Record) data() *recData {
	if r.d == nil {
		return emptyData
	}
	return r.d
}

func (r *Record) window() *Window {
	if r.win == nil {
		return &defaultWindow
	}
	return r.win
}

// own makes r's contents its own, copying them if they are shared.
func (r *Record) own() *recData {
	if !r.owned {
		c := *r.data()
		c.ownSlots = false
		r.d = &c
		r.owned = true
	}
	return r.d
}

// share returns a Record that shares r's contents, and marks them shared,
// so that neither r nor the copy changes them in place again.
func (r *Record) share() Record {
	r.owned = false
	c := *r
	return c
}

// ownSlotsNow copies d's slots unless d alone has them.
func (d *recData) ownSlotsNow() {
	if !d.ownSlots {
		d.slots = slices.Clone(d.slots)
		d.ownSlots = true
	}
}

// turns returns the window's turns, oldest first. The caller must not
// modify them.
func (d *recData) turns() []Turn {
	if d.log == nil {
		return nil
	}
	return d.log.t[d.head : d.head+d.n]
}

// at returns the i'th turn, oldest first.
func (d *recData) at(i int) Turn { return d.log.t[d.head+i] }

// push appends t, dropping the oldest turn first if the window is at
// MaxTurns. It writes t into the shared log when d's window ends where the
// log's written part does, the log has room and it holds no more than
// MaxTokens of dropped turns; otherwise it moves the window to a new log
// with room for more.
func (d *recData) push(t Turn, w *Window) {
	if d.n >= w.MaxTurns {
		d.pop()
	}
	end := d.head + d.n
	if d.log == nil || end == len(d.log.t) || d.dropped > w.MaxTokens ||
		!d.log.claimed.CompareAndSwap(int64(end), int64(end)+1) {
		// Room for the window and as many turns again while it grows,
		// and for half a window more once it is full: 1.5 x MaxTurns in
		// all, so that a log holds few turns beyond its window.
		size := min(max(2*(d.n+1), 4), w.MaxTurns+max(w.MaxTurns/2, 1))
		log := &turnLog{t: make([]Turn, size)}
		copy(log.t, d.turns())
		log.claimed.Store(int64(d.n) + 1)
		d.log, d.head, d.dropped, end = log, 0, 0, d.n
	}
	d.log.t[end] = t
	d.n++
	d.tokens += t.Tokens
}

// pop drops the oldest turn. The log keeps it (see turnLog).
func (d *recData) pop() {
	tok := d.log.t[d.head].Tokens
	d.tokens -= tok
	d.dropped += tok
	d.head++
	d.n--
}

// trim drops the oldest turns until the window fits w, keeping the newest.
func (d *recData) trim(w *Window) {
	for d.n > w.MaxTurns || d.n > 1 && d.system.Tokens+d.tokens > w.MaxTokens {
		d.pop()
	}
}
