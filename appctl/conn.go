package appctl

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// DefaultMaxReplySize caps one reply; a larger one is refused, not buffered.
const DefaultMaxReplySize = 16 << 20

type options struct {
	observer func(method string, d time.Duration, err error)
	maxReply int
}

// Option tunes a Conn.
type Option func(*options)

// WithObserver has f called after every Call with its duration and outcome.
// f runs on the caller's goroutine and must not block.
func WithObserver(f func(method string, d time.Duration, err error)) Option {
	return func(o *options) { o.observer = f }
}

// WithMaxReplySize sets the reply size cap (default 16 MiB); n <= 0 keeps
// the default.
func WithMaxReplySize(n int) Option {
	return func(o *options) {
		if n > 0 {
			o.maxReply = n
		}
	}
}

// Conn is one connection to a unixctl server. It serves any number of calls,
// one at a time, and while held open it notices when the server goes away:
// a reader goroutine sees EOF and closes Done at once.
type Conn struct {
	nc   net.Conn
	opts options

	// turn holds the right to send: one request is in flight at a time,
	// since a reply carries nothing but the id to match it with.
	turn    chan struct{}
	nextID  uint64    // guarded by turn
	wbuf    []byte    // request buffer, guarded by turn
	wdl     time.Time // write deadline currently set, guarded by turn
	pending atomic.Uint64
	replies chan reply // capacity 1: at most one reply is awaited

	done       chan struct{}
	readerDone chan struct{}
	mu         sync.Mutex
	err        error
}

// Dial connects to a control socket; ctx bounds the dial.
func Dial(ctx context.Context, socket string, opts ...Option) (*Conn, error) {
	o := options{maxReply: DefaultMaxReplySize}
	for _, opt := range opts {
		opt(&o)
	}
	var d net.Dialer
	nc, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		return nil, dialError(ctx, socket, err)
	}
	c := &Conn{
		nc:         nc,
		opts:       o,
		turn:       make(chan struct{}, 1),
		wbuf:       make([]byte, 0, 128),
		replies:    make(chan reply, 1),
		done:       make(chan struct{}),
		readerDone: make(chan struct{}),
	}
	go c.readLoop()
	return c, nil
}

func dialError(ctx context.Context, socket string, err error) error {
	switch {
	case ctx.Err() != nil:
		return &ctxError{op: "connect to " + socket, cause: ctx.Err()}
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("%w: %s refuses connections (process gone?)", ErrUnreachable, socket)
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("%w: no control socket %s", ErrUnreachable, socket)
	case errors.Is(err, os.ErrPermission):
		return fmt.Errorf("%w: permission denied on %s", ErrUnreachable, socket)
	case isTimeout(err):
		return &ctxError{op: "connect to " + socket, cause: context.DeadlineExceeded}
	default:
		return fmt.Errorf("%w: connect to %s: %v", ErrUnreachable, socket, err)
	}
}

// Done is closed once the connection is lost: the server closed it (for
// instance because ovs-vswitchd exited), an I/O error, a timeout, or Close.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Err says why Done was closed; nil while the connection is open.
func (c *Conn) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Close closes the connection and waits for its reader goroutine to stop.
func (c *Conn) Close() error {
	c.fail(errClosed)
	<-c.readerDone
	return nil
}

var errClosed = fmt.Errorf("%w: connection closed", ErrUnreachable)

// fail records the first reason the connection ended and closes it.
func (c *Conn) fail(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return
	}
	c.err = err
	close(c.done)
	_ = c.nc.Close()
}

func (c *Conn) readLoop() {
	defer close(c.readerDone)
	fr := newFrameReader(c.nc, c.opts.maxReply)
	var scratch []byte
	for {
		frame, err := fr.next()
		if err != nil {
			c.fail(readError(err))
			return
		}
		rep, err := decodeReply(frame, &scratch)
		if err != nil {
			c.fail(err)
			return
		}
		// Match here, not only in Call, so that an unsolicited answer on an
		// idle connection is noticed too.
		if rep.id == 0 || !c.pending.CompareAndSwap(rep.id, 0) {
			if want := c.pending.Load(); want != 0 {
				c.fail(fmt.Errorf("%w: reply id %d does not match request id %d", ErrMalformed, rep.id, want))
			} else {
				c.fail(fmt.Errorf("%w: unsolicited reply (id %d)", ErrMalformed, rep.id))
			}
			return
		}
		select {
		case c.replies <- rep:
		case <-c.done:
			return
		}
		if cap(scratch) > keepBufSize {
			scratch = nil
		}
	}
}

func readError(err error) error {
	switch {
	case err == io.EOF:
		return fmt.Errorf("%w: server closed the connection", ErrUnreachable)
	case errors.Is(err, ErrMalformed):
		return err
	case errors.Is(err, net.ErrClosed):
		return errClosed
	default:
		return fmt.Errorf("%w: read: %v", ErrUnreachable, err)
	}
}

// Call sends one request and waits for its reply; ctx's deadline bounds the
// wait for the connection's turn, the write and the wait for the reply. A
// call cut short after its request was sent closes the connection, since a
// late reply would be taken for the answer to the next call.
func (c *Conn) Call(ctx context.Context, method string, args ...string) (string, error) {
	start := time.Now()
	result, err := c.call(ctx, method, args)
	if c.opts.observer != nil {
		c.opts.observer(method, time.Since(start), err)
	}
	return result, err
}

func (c *Conn) call(ctx context.Context, method string, args []string) (string, error) {
	select {
	case c.turn <- struct{}{}:
	case <-c.done:
		return "", c.Err()
	case <-ctx.Done():
		return "", &ctxError{op: method, cause: ctx.Err()} // nothing sent: the connection stays usable
	}
	defer func() { <-c.turn }()
	select {
	case <-c.done:
		return "", c.Err()
	default:
	}
	if err := ctx.Err(); err != nil {
		return "", &ctxError{op: method, cause: err}
	}

	c.nextID++
	id := c.nextID
	c.wbuf = appendRequest(c.wbuf[:0], method, args, id)
	dl, _ := ctx.Deadline()
	if !dl.Equal(c.wdl) {
		_ = c.nc.SetWriteDeadline(dl)
		c.wdl = dl
	}
	c.pending.Store(id)
	if _, err := c.nc.Write(c.wbuf); err != nil {
		if isTimeout(err) || ctx.Err() != nil {
			err = &ctxError{op: method, cause: cmp.Or(ctx.Err(), context.DeadlineExceeded)}
		} else if e := c.Err(); e != nil {
			err = e // closed under us: say why
		} else {
			err = fmt.Errorf("%w: write %s: %v", ErrUnreachable, method, err)
		}
		c.fail(err)
		return "", err
	}

	var rep reply
	select {
	case rep = <-c.replies:
	case <-c.done:
		// The reply may have been queued just before the connection ended.
		select {
		case rep = <-c.replies:
		default:
			return "", c.Err()
		}
	case <-ctx.Done():
		err := &ctxError{op: method, cause: ctx.Err()}
		c.fail(err)
		return "", err
	}
	if rep.id != id { // the reader matched it already; this guards the guard
		err := fmt.Errorf("%w: reply id %d does not match request id %d", ErrMalformed, rep.id, id)
		c.fail(err)
		return "", err
	}
	if rep.isError {
		return "", &ServerError{Method: method, Text: rep.text}
	}
	return rep.text, nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// Version asks for ovs-vswitchd's version: "3.1.0".
func (c *Conn) Version(ctx context.Context) (string, error) {
	out, err := c.Call(ctx, "version")
	if err != nil {
		return "", err
	}
	v := parseVersion(out)
	if v == "" {
		return "", fmt.Errorf("%w: empty answer to version", ErrMalformed)
	}
	return v, nil
}

// parseVersion takes the last word of the first line of
// "ovs-vswitchd (Open vSwitch) 3.1.0\n" (DPDK builds add more lines).
func parseVersion(out string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(out), "\n")
	line = strings.TrimSpace(line)
	return line[strings.LastIndexAny(line, " \t")+1:]
}

// DPFeatures asks for and parses dpif/show-dp-features of bridge.
func (c *Conn) DPFeatures(ctx context.Context, bridge string) (Features, error) {
	out, err := c.Call(ctx, "dpif/show-dp-features", bridge)
	if err != nil {
		return nil, err
	}
	return ParseDPFeatures(out)
}
