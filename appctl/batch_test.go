package appctl

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ovsgate/ovsgate/internal/unixctltest"
)

var threeRequests = []Request{
	{Method: "version"},
	{Method: "bad"},
	{Method: "dpif/show-dp-features", Args: []string{"br-int"}},
}

// The server below answers nothing until all three requests have arrived:
// a Batch that waited for each reply before sending the next would hang.
func TestBatchSendsAllAtOnceAndAnswersInOrder(t *testing.T) {
	var (
		mu     sync.Mutex
		queued []request
	)
	s := newFakeServer(t, func(req request, c *unixctltest.Conn) {
		mu.Lock()
		defer mu.Unlock()
		queued = append(queued, req)
		if len(queued) < 3 && req.Method != "after" {
			return
		}
		for _, q := range queued {
			if q.Method == "bad" {
				c.Send(q.ID, nil, "bad is not a valid command")
			} else {
				c.Send(q.ID, q.Method+"("+strings.Join(q.Params, ",")+")\n", nil)
			}
		}
		queued = nil
	})
	var observed []string
	c := dial(t, s, WithObserver(func(m string, _ time.Duration, _ error) { observed = append(observed, m) }))

	res := c.Batch(ctxTimeout(t, 5*time.Second), threeRequests...)
	require.Len(t, res, 3)
	assert.Equal(t, Result{Text: "version()\n"}, res[0])
	var se *ServerError
	require.ErrorAs(t, res[1].Err, &se, "an error reply concerns its own request")
	assert.Equal(t, "bad", se.Method)
	assert.Equal(t, Result{Text: "dpif/show-dp-features(br-int)\n"}, res[2])
	assert.Equal(t, []string{"version", "bad", "dpif/show-dp-features"}, observed)
	assertOpen(t, c)

	out, err := c.Call(ctxTimeout(t, 5*time.Second), "after")
	require.NoError(t, err, "a call after a batch is matched by its own id")
	assert.Equal(t, "after()\n", out)
	assert.Nil(t, c.Batch(ctxTimeout(t, 5*time.Second)), "an empty batch sends nothing")
	assertOpen(t, c)
}

// Faults part way through a batch fail the request they hit and every one
// after it, and close the connection.
func TestBatchFaultsMidway(t *testing.T) {
	tests := []struct {
		name    string
		handle  func(req request, c *unixctltest.Conn)
		timeout time.Duration
		is      error
	}{
		{"server exits after the first reply", func(req request, c *unixctltest.Conn) {
			if req.Method == "version" {
				c.Send(req.ID, "ok\n", nil)
				return
			}
			c.Close()
		}, 5 * time.Second, ErrUnreachable},
		{"no answer after the first", func(req request, c *unixctltest.Conn) {
			if req.Method == "version" {
				c.Send(req.ID, "ok\n", nil)
			}
		}, 200 * time.Millisecond, ErrTimeout},
		{"answers out of order", func(req request, c *unixctltest.Conn) {
			if req.Method == "version" {
				c.Send(req.ID, "ok\n", nil)
				c.Send(req.ID+2, "too early\n", nil)
			}
		}, 5 * time.Second, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newFakeServer(t, tt.handle)
			c := dial(t, s)
			ctx, cancel := context.WithTimeout(context.Background(), tt.timeout)
			defer cancel()
			res := c.Batch(ctx, threeRequests...)
			require.Len(t, res, 3)
			assert.Equal(t, Result{Text: "ok\n"}, res[0], "the answer before the fault stands")
			for _, r := range res[1:] {
				assert.ErrorIs(t, r.Err, tt.is)
				assert.Empty(t, r.Text)
			}
			waitDone(t, c, tt.name)
		})
	}
}

func TestBatchOnClosedConnection(t *testing.T) {
	s := newFakeServer(t, func(req request, c *unixctltest.Conn) { c.Send(req.ID, "ok\n", nil) })
	c := dial(t, s)
	c.Close()
	res := c.Batch(ctxTimeout(t, 5*time.Second), threeRequests...)
	require.Len(t, res, 3)
	for _, r := range res {
		assert.ErrorIs(t, r.Err, ErrUnreachable)
	}
}
