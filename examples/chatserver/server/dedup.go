package server

import "encoding/json"

// answered is a reply the server gave, remembered so that a repeated
// message id can be answered again without the model. The reply's text is
// not kept here: it is the assistant turn numbered Turn in the session's
// context window, so an answer is remembered only while its turn is in
// the window.
type answered struct {
	ID       string `json:"id"`
	Turn     int64  `json:"turn"`               // absolute number of the assistant turn
	ModelUS  int64  `json:"model_us,omitempty"` // microseconds
	QueueUS  int64  `json:"queue_us,omitempty"`
	Fallback bool   `json:"fallback,omitempty"`
	Echo     bool   `json:"echo,omitempty"`
}

// dedup is a session's window of answered message ids, oldest first once
// full. It is owned by the session's worker. Windows are small (tens of
// ids), so a linear scan beats a map and costs no allocation per id.
type dedup struct {
	size  int
	items []answered // allocated on first use
	next  int        // the oldest item once len(items) == size
}

func newDedup(size int) dedup { return dedup{size: size} }

func (d *dedup) get(id string) (answered, bool) {
	for _, a := range d.items {
		if a.ID == id {
			return a, true
		}
	}
	return answered{}, false
}

// put remembers a, forgetting the oldest answer when the window is full.
func (d *dedup) put(a answered) {
	if len(d.items) < d.size {
		if d.items == nil {
			d.items = make([]answered, 0, d.size)
		}
		d.items = append(d.items, a)
		return
	}
	d.items[d.next] = a
	d.next = (d.next + 1) % d.size
}

// renumber gives each answer the turn number to(a.Turn) after a merge
// renumbered the session's turns, and forgets the answers for which to
// reports false: a repeat of their ids is answered as new.
func (d *dedup) renumber(to func(turn int64) (int64, bool)) {
	kept := make([]answered, 0, len(d.items))
	for i := range d.items {
		a := d.items[(d.next+i)%len(d.items)]
		if t, ok := to(a.Turn); ok {
			a.Turn = t
			kept = append(kept, a)
		}
	}
	d.items, d.next = kept, 0
}

// save encodes the window, oldest first, for the session's record.
func (d *dedup) save() string {
	ordered := make([]answered, 0, len(d.items))
	for i := range d.items {
		ordered = append(ordered, d.items[(d.next+i)%len(d.items)])
	}
	b, _ := json.Marshal(ordered) // cannot fail: strings, numbers and bools
	return string(b)
}

// load restores a window saved by save. A value it cannot read leaves the
// window empty: forgetting answered ids only costs a model call.
func (d *dedup) load(v string) {
	var as []answered
	if json.Unmarshal([]byte(v), &as) != nil {
		return
	}
	for _, a := range as {
		d.put(a)
	}
}
