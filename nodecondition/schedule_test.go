package nodecondition

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// The schedule's tests run on made-up times in milliseconds from t0, with
// the defaults: a 5 min heartbeat, a 1 s merge window, retries from 1 s to
// 1 min.

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// never stands for the zero time.
const never = -1

// at is the time n milliseconds after t0, or the zero time for never.
func at(n int64) time.Time {
	if n == never {
		return time.Time{}
	}
	return t0.Add(time.Duration(n) * time.Millisecond)
}

// msOf is the inverse of at.
func msOf(t time.Time) int64 {
	if t.IsZero() {
		return never
	}
	return t.Sub(t0).Milliseconds()
}

func defaultSchedule() schedule {
	return newSchedule(Config{Heartbeat: DefaultHeartbeat, MergeWindow: DefaultMergeWindow, RetryMin: DefaultRetryMin, RetryMax: DefaultRetryMax})
}

func TestScheduleNext(t *testing.T) {
	const hb = int64(DefaultHeartbeat / time.Millisecond)
	tests := []struct {
		name string
		// the schedule's state, in ms (never: zero)
		changedAt, lastWrite, retryAt int64
		now                           int64
		want                          want
		// the answer: write now, or else wake at wake (never: on the next Update)
		write         bool
		wake          int64
		thenChangedAt int64
	}{
		{name: "nothing before the first Update", changedAt: never, lastWrite: never, retryAt: never, now: 0, want: wantNothing,
			wake: never, thenChangedAt: never},
		{name: "a first change waits out the merge window", changedAt: never, lastWrite: never, retryAt: never, now: 0, want: wantChange,
			wake: 1000, thenChangedAt: 0},
		{name: "changes within the window keep its end", changedAt: 0, lastWrite: never, retryAt: never, now: 400, want: wantChange,
			wake: 1000, thenChangedAt: 0},
		{name: "the window's end writes the latest", changedAt: 0, lastWrite: never, retryAt: never, now: 1000, want: wantChange,
			write: true, thenChangedAt: 0},
		{name: "a late wake-up writes at once", changedAt: 0, lastWrite: never, retryAt: never, now: 5000, want: wantChange,
			write: true, thenChangedAt: 0},
		{name: "a change after a write waits out a window of its own", changedAt: never, lastWrite: 1000, retryAt: never, now: 1200, want: wantChange,
			wake: 2200, thenChangedAt: 1200},
		{name: "a change undone within the window: no write, the heartbeat", changedAt: 100_000, lastWrite: 0, retryAt: never, now: 100_500, want: wantSame,
			wake: hb, thenChangedAt: never},
		{name: "unchanged, the heartbeat fresh", changedAt: never, lastWrite: 0, retryAt: never, now: hb - 1, want: wantSame,
			wake: hb, thenChangedAt: never},
		{name: "unchanged, the heartbeat due", changedAt: never, lastWrite: 0, retryAt: never, now: hb, want: wantSame,
			write: true, thenChangedAt: never},
		{name: "never written, the Node says it already: the heartbeat is due", changedAt: never, lastWrite: never, retryAt: never, now: 0, want: wantSame,
			write: true, thenChangedAt: never},
		{name: "backing off: a change waits for the retry, not the window", changedAt: never, lastWrite: 0, retryAt: 4000, now: 1500, want: wantChange,
			wake: 4000, thenChangedAt: 1500},
		{name: "backing off: a change undone still waits for the retry", changedAt: 1500, lastWrite: 0, retryAt: 4000, now: 1800, want: wantSame,
			wake: 4000, thenChangedAt: never},
		{name: "the retry due", changedAt: 1500, lastWrite: never, retryAt: 4000, now: 4000, want: wantChange,
			write: true, thenChangedAt: 1500},
		{name: "the retry due, nothing changed: retried all the same", changedAt: never, lastWrite: 0, retryAt: 4000, now: 4000, want: wantSame,
			write: true, thenChangedAt: never},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := defaultSchedule()
			s.changedAt, s.lastWrite, s.retryAt = at(tt.changedAt), at(tt.lastWrite), at(tt.retryAt)
			got, d := s.next(at(tt.now), tt.want)
			assert.Equal(t, tt.write, d.write, "write now")
			if tt.write {
				assert.True(t, d.wake.IsZero(), "no wake-up with a write")
			} else {
				assert.Equal(t, tt.wake, msOf(d.wake), "wake at")
			}
			assert.Equal(t, tt.thenChangedAt, msOf(got.changedAt), "start of the change")
			assert.Equal(t, s.lastWrite, got.lastWrite, "next changes no write time")
			assert.Equal(t, s.retryAt, got.retryAt, "next changes no retry time")
		})
	}
}

func TestScheduleDone(t *testing.T) {
	tests := []struct {
		name string
		// before: failures since the last success, and the last write (ms)
		failures  int
		lastWrite int64
		ok        bool
		jitter    float64 // from -1 to 1
		// after, for an attempt that ended at 10 000 ms
		thenFailures  int
		thenLastWrite int64
		thenRetryAt   int64
	}{
		{name: "success: the heartbeat counts from it", lastWrite: 0, ok: true,
			thenLastWrite: 10_000, thenRetryAt: never},
		{name: "success after failures ends the backoff", failures: 5, lastWrite: never, ok: true,
			thenLastWrite: 10_000, thenRetryAt: never},
		{name: "first failure: 1 s", lastWrite: 0,
			thenFailures: 1, thenLastWrite: 0, thenRetryAt: 11_000},
		{name: "first failure, least jitter: never below 1 s", lastWrite: 0, jitter: -1,
			thenFailures: 1, thenLastWrite: 0, thenRetryAt: 11_000},
		{name: "first failure, most jitter: 1.2 s", lastWrite: 0, jitter: 1,
			thenFailures: 1, thenLastWrite: 0, thenRetryAt: 11_200},
		{name: "second failure: 2 s", failures: 1, lastWrite: never,
			thenFailures: 2, thenLastWrite: never, thenRetryAt: 12_000},
		{name: "fourth failure: 8 s", failures: 3, lastWrite: never,
			thenFailures: 4, thenLastWrite: never, thenRetryAt: 18_000},
		{name: "fourth failure, least jitter: 6.4 s", failures: 3, lastWrite: never, jitter: -1,
			thenFailures: 4, thenLastWrite: never, thenRetryAt: 16_400},
		{name: "fourth failure, most jitter: 9.6 s", failures: 3, lastWrite: never, jitter: 1,
			thenFailures: 4, thenLastWrite: never, thenRetryAt: 19_600},
		{name: "seventh failure: the cap, 1 min", failures: 6, lastWrite: never,
			thenFailures: 7, thenLastWrite: never, thenRetryAt: 70_000},
		{name: "at the cap, most jitter: never above 1 min", failures: 50, lastWrite: never, jitter: 1,
			thenFailures: 51, thenLastWrite: never, thenRetryAt: 70_000},
		{name: "at the cap, least jitter: 48 s", failures: 50, lastWrite: never, jitter: -1,
			thenFailures: 51, thenLastWrite: never, thenRetryAt: 58_000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := defaultSchedule()
			s.failures, s.lastWrite, s.changedAt = tt.failures, at(tt.lastWrite), at(9000)
			got := s.done(at(10_000), tt.ok, tt.jitter)
			assert.Equal(t, tt.thenFailures, got.failures, "failures")
			assert.Equal(t, tt.thenLastWrite, msOf(got.lastWrite), "last write")
			assert.Equal(t, tt.thenRetryAt, msOf(got.retryAt), "retry at")
			assert.True(t, got.changedAt.IsZero(), "a write, good or bad, ends the change it wrote")
		})
	}
}

// update is a state given to the writer at a time in ms.
type update struct {
	at    int64
	state string
}

// simulate runs the schedule as Run does, with attempts that take no time
// and no jitter, from 0 to until ms: the writer wakes at the schedule's time
// or on an update, whichever comes first. ok says whether attempt n (1 for
// the first) succeeds. It returns the times of the attempts.
func simulate(updates []update, ok func(n int) bool, until int64) []int64 {
	s := defaultSchedule()
	var (
		latest, onNode string
		attempts       []int64
	)
	for now := int64(0); now <= until; {
		for len(updates) > 0 && updates[0].at <= now {
			latest, updates = updates[0].state, updates[1:]
		}
		w := wantNothing
		switch {
		case latest == "":
		case latest != onNode:
			w = wantChange
		default:
			w = wantSame
		}
		var d decision
		if s, d = s.next(at(now), w); d.write {
			attempts = append(attempts, now)
			good := ok(len(attempts))
			if good {
				onNode = latest
			}
			s = s.done(at(now), good, 0)
			continue
		}
		next := until + 1
		if !d.wake.IsZero() {
			next = min(next, msOf(d.wake))
		}
		if len(updates) > 0 {
			next = min(next, updates[0].at)
		}
		now = next
	}
	return attempts
}

// TestScheduleTimeline: the rules together, over minutes of made-up time.
func TestScheduleTimeline(t *testing.T) {
	always := func(int) bool { return true }
	var flaps []update
	for i := range 20 {
		flaps = append(flaps, update{int64(10 * i), []string{"ready", "not ready"}[i%2]})
	}
	tests := []struct {
		name    string
		updates []update
		ok      func(n int) bool
		until   int64
		want    []int64
	}{
		{"one state: the merge window, then one write per heartbeat",
			[]update{{0, "ready"}}, always, 1_000_000,
			[]int64{1000, 301_000, 601_000, 901_000}},
		{"twenty changes within 200 ms: one write of the latest",
			flaps, always, 400_000,
			[]int64{1000, 301_000}},
		{"the same state again: no write",
			[]update{{0, "ready"}, {5000, "ready"}, {6000, "ready"}}, always, 300_000,
			[]int64{1000}},
		{"changes a second apart: a write a second at most",
			[]update{{0, "a"}, {1500, "b"}, {2700, "c"}, {2900, "d"}, {4000, "e"}}, always, 10_000,
			[]int64{1000, 2500, 3700, 5000}},
		{"an outage: retries from 1 s doubling up to 1 min",
			[]update{{0, "ready"}}, func(int) bool { return false }, 250_000,
			[]int64{1000, 2000, 4000, 8000, 16_000, 32_000, 64_000, 124_000, 184_000, 244_000}},
		{"a change during the backoff waits for the retry",
			[]update{{0, "ready"}, {1500, "not ready"}}, func(n int) bool { return n > 1 }, 10_000,
			[]int64{1000, 2000}},
		{"recovery: the heartbeat counts from the first success",
			[]update{{0, "ready"}}, func(n int) bool { return n > 3 }, 400_000,
			[]int64{1000, 2000, 4000, 8000, 308_000}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, simulate(tt.updates, tt.ok, tt.until))
		})
	}
}
