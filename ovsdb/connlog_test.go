package ovsdb

import (
	"errors"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/ovsgate/ovsgate/internal/testutil"
)

// Which connection events make a line at the default verbosity.
func TestConnLog(t *testing.T) {
	refused := errors.New("connect: connection refused")
	closed := errClosed
	type step struct {
		at   time.Duration // since the scenario began
		do   func(l *connLog, now time.Time)
		want string // the default-level message, "" for none
	}
	connect := func(at time.Duration, want string) step {
		return step{at, func(l *connLog, now time.Time) { l.connected(now) }, want}
	}
	lose := func(at, connectedFor time.Duration, want string) step {
		return step{at, func(l *connLog, now time.Time) { l.lost(now, connectedFor, closed) }, want}
	}
	fail := func(at time.Duration, want string) step {
		return step{at, func(l *connLog, now time.Time) { l.failed(now, refused) }, want}
	}
	up := func(at, connectedFor time.Duration, want string) step {
		return step{at, func(l *connLog, now time.Time) { l.up(now, connectedFor) }, want}
	}
	const (
		connected   = "OVSDB connected"
		lost        = "OVSDB connection lost"
		notYet      = "OVSDB not reachable yet, retrying"
		stillNot    = "OVSDB still not reachable"
		ms          = time.Millisecond
		s           = time.Second
		repeatEvery = 5 * time.Minute
	)
	tests := []struct {
		name  string
		steps []step
	}{
		{"up at once", []step{connect(0, connected), up(5*s, 5*s, "")}},
		{"absent at start, then up", []step{
			fail(0, notYet), fail(50*ms, ""), fail(time.Minute, ""), fail(repeatEvery-s, ""),
			fail(repeatEvery, stillNot), fail(repeatEvery+s, ""),
			connect(repeatEvery+2*s, connected),
		}},
		{"restarts are state changes", []step{
			connect(0, connected),
			lose(8*s, 8*s, lost), fail(8*s+50*ms, ""), connect(8*s+100*ms, connected),
			lose(16*s, 8*s, lost), connect(16*s+50*ms, connected),
		}},
		{"flapping is told once, and when it settles", []step{
			connect(0, connected), lose(ms, ms, lost),
			connect(10*ms, connected), lose(11*ms, ms, ""),
			connect(20*ms, ""), lose(21*ms, ms, ""),
			connect(30*ms, ""), up(5*s, 5*s, connected),
			lose(time.Minute, time.Minute, lost),
		}},
		{"flapping, repeated rarely", []step{
			connect(0, connected), lose(ms, ms, lost),
			connect(10*ms, connected), lose(11*ms, ms, ""),
			connect(repeatEvery, ""), lose(repeatEvery+ms, ms, lost),
		}},
		{"flapping, then an outage", []step{
			connect(0, connected), lose(ms, ms, lost),
			connect(10*ms, connected), lose(11*ms, ms, ""),
			fail(2*s, ""), fail(11*s, lost), fail(12*s, ""), connect(13*s, connected),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logs, _ := testutil.CaptureKlog(t)
			l := &connLog{endpoint: "unix:/x", stableAfter: 10 * s, flapBelow: s, repeatEvery: repeatEvery}
			t0 := time.Now()
			msg := regexp.MustCompile(`\] "([^"]*)"`)
			seen := 0
			for i, st := range tt.steps {
				st.do(l, t0.Add(st.at))
				lines := logs.Lines()
				var got string
				switch len(lines) - seen {
				case 0:
				case 1:
					got = msg.FindStringSubmatch(lines[seen])[1]
				default:
					t.Fatalf("step %d: more than one line: %q", i, lines[seen:])
				}
				seen = len(lines)
				assert.Equal(t, st.want, got, "step %d at %v", i, st.at)
			}
		})
	}
}
