package server

import (
	"time"

	"github.com/parley-go/parley/backpressure"
	"github.com/parley-go/parley/ctxstore"
)

// placeKeep is how long the server keeps the wait-line ticket of a session
// whose connection went away while it waited its turn. A client that
// reconnects within it (a phone changing networks, a reloaded page) keeps
// its place in the line; one that comes back later takes a new ticket at
// the back, as a newcomer does.
const placeKeep = time.Minute

// places holds the wait-line tickets of sessions that left while holding
// one, by session. The zero value is empty and ready; the server's mu
// guards it.
type places struct {
	held  map[ctxstore.Key]place
	swept time.Time // when entries past placeKeep were last dropped
}

type place struct {
	ticket backpressure.Ticket
	left   time.Time
}

// keep holds t for the session k, which left at now. A zero ticket is no
// place and is not kept. keep drops the entries older than placeKeep, at
// most once per placeKeep, and take drops the one it finds: entries past
// placeKeep stay only until the next session leaves with a ticket.
func (p *places) keep(k ctxstore.Key, t backpressure.Ticket, now time.Time) {
	if t == 0 {
		return
	}
	if p.held == nil {
		p.held = make(map[ctxstore.Key]place)
	}
	if now.Sub(p.swept) >= placeKeep {
		for k, pl := range p.held {
			if now.Sub(pl.left) >= placeKeep {
				delete(p.held, k)
			}
		}
		p.swept = now
	}
	p.held[k] = place{t, now}
}

// take returns the ticket kept for the session k, if it left less than
// placeKeep before now, and forgets it.
func (p *places) take(k ctxstore.Key, now time.Time) backpressure.Ticket {
	pl, ok := p.held[k]
	if !ok {
		return 0
	}
	delete(p.held, k)
	if now.Sub(pl.left) >= placeKeep {
		return 0
	}
	return pl.ticket
}

// len returns the number of tickets held.
func (p *places) len() int { return len(p.held) }
