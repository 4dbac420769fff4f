package server

import (
	"context"
	"fmt"
	"time"
)

// modelReq is a session's turn on its way to the model through the
// batcher, and back. A session has one turn in flight at most, so it keeps
// one modelReq and reuses it, prompt buffer included.
type modelReq struct {
	session     *session
	arrival     time.Time // when the user's message arrived
	id, text    string    // the user's message
	prompt      []Message
	promptHash  uint64        // of prompt, for the log (see promptHash)
	regenerated bool          // this is the second try after an echo
	queued      time.Duration // queue time of an earlier try

	// The batcher's answer, and the callbacks that carry it back to the
	// session, made once per session.
	ans      answer
	err      error
	onAnswer func(answer, error)
	resume   func()
}

// init prepares req for ss's turns.
func (req *modelReq) init(ss *session) {
	req.session = ss
	req.resume = func() { ss.resume(req) }
	req.onAnswer = func(a answer, err error) {
		req.ans, req.err = a, err
		ss.srv.exec.do(req.resume)
	}
}

// answer is the model's completion for one prompt, as the session sees it.
type answer struct {
	Completion
	fallback bool // the model was failing; Text is the fallback answer
	echo     bool // the reply repeats the user's words
}

// submit hands req to the batcher. The answer resumes req's session on
// another goroutine, since the batcher's callback must not block.
func (s *Server) submit(req *modelReq) error {
	s.queued.Add(1)
	err := s.batcher.Submit(req, req.onAnswer)
	if err != nil {
		s.queued.Add(-1)
	}
	return err
}

// runBatch is the batcher's batch function: one guarded model call for a
// batch of prompts.
func (s *Server) runBatch(ctx context.Context, reqs []*modelReq) ([]answer, error) {
	s.inFlight.Add(1)
	defer s.inFlight.Add(-1)
	now := time.Now()
	prompts := make([][]Message, len(reqs))
	for i, r := range reqs {
		prompts[i] = r.prompt
		s.metrics.queueDelay.Observe(now.Sub(r.arrival).Seconds())
	}
	s.headWait.Store(int64(now.Sub(reqs[len(reqs)-1].arrival)))
	s.lastDispatch.Store(now.UnixNano())
	s.queued.Add(-int64(len(reqs)))
	s.metrics.batchSize.Observe(float64(len(reqs)))

	res, err := s.guard.Call(ctx, func(ctx context.Context) ([]Completion, error) {
		return s.cfg.Model.Complete(ctx, prompts)
	})
	if err == nil && !res.Fallback {
		// A fallback is instant and a failure may have waited through
		// retries: neither says how fast the model works a queue.
		s.noteCallTime(time.Since(now))
	}
	if err == nil && !res.Fallback && len(res.Value) != len(reqs) {
		err = fmt.Errorf("server: model returned %d completions for %d prompts", len(res.Value), len(reqs))
	}
	out := make([]answer, len(reqs))
	if err != nil || res.Fallback {
		s.metrics.modelFailures.Inc()
		s.log.Debug("model call failed; answering with the fallback", "prompts", len(reqs), "err", err)
		for i := range out {
			out[i] = answer{Completion: Completion{Text: s.cfg.FallbackText}, fallback: true}
		}
		return out, nil
	}
	for i, c := range res.Value {
		c.Queue += now.Sub(reqs[i].arrival)
		out[i] = answer{Completion: c}
	}
	return out, nil
}

// sample reports whether this turn's full prompt should be logged.
func (s *Server) sample() bool {
	return s.turns.Add(1)%uint64(s.cfg.PromptSample) == 0
}
