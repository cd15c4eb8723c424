package nodecondition

import (
	"time"

	"github.com/ovsgate/ovsgate/internal/backoff"
)

// want is how the latest state from Update stands to what the Node holds.
type want int

const (
	wantNothing want = iota // no Update yet: nothing to write
	wantSame                // the Node says it already (as far as the writer knows)
	wantChange              // the Node says something else, or the writer does not know what
)

// schedule decides when the writer writes. It is a value whose methods are
// pure functions of it and of the time they are given, so that every timing
// rule can be tested in a table with made-up times; Run only feeds it the
// clock and waits as it says.
//
// The rules, in the order next applies them:
//   - nothing is written before the first Update;
//   - after a failure, the next attempt waits for its retry time, whatever
//     changes meanwhile: a flapping OVS does not undo the backoff;
//   - a change is written one merge window after it was first seen, so that
//     the changes within the window make one write of the latest state;
//   - an unchanged condition is rewritten one heartbeat after the last write.
type schedule struct {
	heartbeat   time.Duration
	mergeWindow time.Duration
	// retryMin and retryMax bound the doubling, jittered delay after failures.
	retryMin, retryMax time.Duration

	changedAt time.Time // when a change was first seen; zero when there is none
	lastWrite time.Time // when the last write succeeded; zero before the first
	retryAt   time.Time // when to try again after a failure; zero after a success
	failures  int       // failed attempts since the last success
}

func newSchedule(cfg Config) schedule {
	return schedule{heartbeat: cfg.Heartbeat, mergeWindow: cfg.MergeWindow, retryMin: cfg.RetryMin, retryMax: cfg.RetryMax}
}

// decision is the schedule's answer: write now, or wait until wake (or, when
// wake is zero, until the next Update).
type decision struct {
	write bool
	wake  time.Time
}

// next says what to do at now, given how the latest state stands to the
// Node's, and returns the schedule with the start of a change noted.
func (s schedule) next(now time.Time, w want) (schedule, decision) {
	if w == wantChange && s.changedAt.IsZero() {
		s.changedAt = now
	}
	if w != wantChange {
		s.changedAt = time.Time{}
	}
	var at time.Time
	switch {
	case w == wantNothing:
		return s, decision{}
	case !s.retryAt.IsZero():
		at = s.retryAt
	case w == wantChange:
		at = s.changedAt.Add(s.mergeWindow)
	default:
		at = s.lastWrite.Add(s.heartbeat) // never written: due at once
	}
	if now.Before(at) {
		return s, decision{wake: at}
	}
	return s, decision{write: true}
}

// done records an attempt that ended at now. After a failure, the next one
// waits retryMin doubled for each failure before, up to retryMax, moved by
// jitter (from -1 to 1) times 20% so that nodes that failed together do not
// retry together.
func (s schedule) done(now time.Time, ok bool, jitter float64) schedule {
	s.changedAt = time.Time{}
	if ok {
		s.lastWrite, s.retryAt, s.failures = now, time.Time{}, 0
		return s
	}
	s.failures++
	s.retryAt = now.Add(backoff.Delay(s.retryMin, s.retryMax, s.failures, jitter))
	return s
}
