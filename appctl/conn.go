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

// maxReplySize caps one reply; a larger one is refused, not buffered.
const maxReplySize = 16 << 20

type options struct {
	observer func(method string, d time.Duration, err error)
	maxReply int
}

// Option tunes a Conn.
type Option func(*options)

// WithObserver has f called after every request with its duration and outcome.
// f runs on the caller's goroutine and must not block.
func WithObserver(f func(method string, d time.Duration, err error)) Option {
	return func(o *options) { o.observer = f }
}

// Conn is one connection to a unixctl server. It serves any number of calls,
// one at a time, and while held open it notices when the server goes away:
// a reader goroutine sees EOF and closes Done at once.
type Conn struct {
	nc   net.Conn
	opts options
	peer int // see PeerPID

	// turn holds the right to send: one call or batch is in flight at a
	// time, and the server answers a connection's requests in order, so a
	// reply is matched by its id alone.
	turn    chan struct{}
	nextID  uint64        // guarded by turn
	wbuf    []byte        // request buffer, guarded by turn
	wdl     time.Time     // write deadline currently set, guarded by turn
	pending atomic.Uint64 // id of the next reply expected; 0 when none is
	last    atomic.Uint64 // id of the last request in flight
	replies chan reply    // replies in order, each taken before the next is read

	done       chan struct{}
	readerDone chan struct{}
	mu         sync.Mutex
	err        error
}

// Dial connects to a control socket; ctx bounds the dial.
func Dial(ctx context.Context, socket string, opts ...Option) (*Conn, error) {
	o := options{maxReply: maxReplySize}
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
		peer:       peerPID(nc),
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
		return fmt.Errorf("%w: %s", ErrRefused, socket)
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("%w %s", ErrNoSocket, socket)
	case errors.Is(err, os.ErrPermission):
		return fmt.Errorf("%w on %s", ErrPermission, socket)
	case isTimeout(err):
		return &ctxError{op: "connect to " + socket, cause: context.DeadlineExceeded}
	default:
		return fmt.Errorf("%w: connect to %s: %w", ErrUnreachable, socket, unwrapOp(err))
	}
}

// peerPID asks the kernel which process listens on the other end of a unix
// connection (SO_PEERCRED). The kernel translates the pid into this
// process's pid namespace, and says 0 when that process is not visible here.
func peerPID(nc net.Conn) int {
	uc, ok := nc.(*net.UnixConn)
	if !ok {
		return 0
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return 0
	}
	var cred *syscall.Ucred
	_ = raw.Control(func(fd uintptr) {
		cred, err = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	})
	if err != nil || cred == nil {
		return 0
	}
	return int(cred.Pid)
}

// PeerPID is the pid, in this process's pid namespace, of the process that
// answers on the connection; 0 when it lives in a pid namespace not visible
// from here (ovs-vswitchd in a container of its own, seen from another).
func (c *Conn) PeerPID() int { return c.peer }

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
	c.fail(errLocalClose)
	<-c.readerDone
	return nil
}

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
	for {
		frame, err := fr.next()
		if err != nil {
			c.fail(readError(err))
			return
		}
		rep, err := decodeReply(frame)
		if err != nil {
			c.fail(err)
			return
		}
		// Match here, not only in roundTrip, so that an unsolicited answer on an
		// idle connection is noticed too.
		want := c.pending.Load()
		if want == 0 {
			c.fail(fmt.Errorf("%w: unsolicited reply (id %d)", ErrMalformed, rep.id))
			return
		}
		if rep.id != want {
			c.fail(fmt.Errorf("%w: reply id %d does not match request id %d", ErrMalformed, rep.id, want))
			return
		}
		next := uint64(0)
		if want < c.last.Load() {
			next = want + 1 // the rest of a batch
		}
		c.pending.Store(next)
		select {
		case c.replies <- rep:
		case <-c.done:
			return
		}
	}
}

func readError(err error) error {
	switch {
	case errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET):
		return ErrClosed
	case errors.Is(err, ErrMalformed):
		return err
	case errors.Is(err, net.ErrClosed):
		return errLocalClose
	default:
		return fmt.Errorf("%w: read: %w", ErrUnreachable, unwrapOp(err))
	}
}

// unwrapOp drops the *net.OpError around a system error: its text repeats
// the socket path the caller already names.
func unwrapOp(err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		return oe.Err
	}
	return err
}

// Request is one call of a Batch.
type Request struct {
	Method string
	Args   []string
}

// Result answers one Request of a Batch: the reply's text, or why there is
// none (a *ServerError for an error reply).
type Result struct {
	Text string
	Err  error
}

// Batch sends its requests in one write and returns their results in
// order. ovs-vswitchd answers every request already waiting on a connection
// in one pass of its main loop, so a batch costs one round trip however
// many requests it holds; with thousands of ports a pass takes tens of
// milliseconds. An error reply (*ServerError) concerns its own request
// only; a lost connection or ctx's end fails the request it hit and every
// one after it, and closes the connection: a late reply would be taken for
// the answer to the next request. ctx bounds the wait for the connection's
// turn, the write and the replies.
func (c *Conn) Batch(ctx context.Context, reqs ...Request) []Result {
	if len(reqs) == 0 {
		return nil
	}
	return c.roundTrip(ctx, reqs)
}

func (c *Conn) roundTrip(ctx context.Context, reqs []Request) []Result {
	start := time.Now()
	res := make([]Result, len(reqs))
	n := 0 // results settled so far
	settle := func(text string, err error) {
		res[n] = Result{Text: text, Err: err}
		if c.opts.observer != nil {
			c.opts.observer(reqs[n].Method, time.Since(start), err)
		}
		n++
	}
	failRest := func(err error) []Result {
		for n < len(reqs) {
			settle("", err)
		}
		return res
	}

	select {
	case c.turn <- struct{}{}:
	case <-c.done:
		return failRest(c.Err())
	case <-ctx.Done():
		return failRest(&ctxError{op: reqs[0].Method, cause: ctx.Err()}) // nothing sent: the connection stays usable
	}
	defer func() { <-c.turn }()
	select {
	case <-c.done:
		return failRest(c.Err())
	default:
	}
	if err := ctx.Err(); err != nil {
		return failRest(&ctxError{op: reqs[0].Method, cause: err})
	}

	first := c.nextID + 1
	c.wbuf = c.wbuf[:0]
	for _, r := range reqs {
		c.nextID++
		c.wbuf = appendRequest(c.wbuf, r.Method, r.Args, c.nextID)
	}
	dl, _ := ctx.Deadline()
	if !dl.Equal(c.wdl) {
		_ = c.nc.SetWriteDeadline(dl)
		c.wdl = dl
	}
	// Set last before pending: the reader looks at last only once it sees
	// a reply it expects.
	c.last.Store(c.nextID)
	c.pending.Store(first)
	if _, err := c.nc.Write(c.wbuf); err != nil {
		if isTimeout(err) || ctx.Err() != nil {
			err = &ctxError{op: reqs[0].Method, cause: cmp.Or(ctx.Err(), context.DeadlineExceeded)}
		} else if e := c.Err(); e != nil {
			err = e // closed under us: say why
		} else if errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET) {
			err = ErrClosed // the other end is gone: it exited
		} else {
			err = fmt.Errorf("%w: write %s: %w", ErrUnreachable, reqs[0].Method, unwrapOp(err))
		}
		c.fail(err)
		return failRest(err)
	}

	for n < len(reqs) {
		id := first + uint64(n)
		method := reqs[n].Method
		var rep reply
		select {
		case rep = <-c.replies:
		case <-c.done:
			// The reply may have been queued just before the connection ended.
			select {
			case rep = <-c.replies:
			default:
				return failRest(c.Err())
			}
		case <-ctx.Done():
			err := &ctxError{op: method, cause: ctx.Err()}
			c.fail(err)
			return failRest(err)
		}
		if rep.id != id { // the reader matched it already; this guards the guard
			err := fmt.Errorf("%w: reply id %d does not match request id %d", ErrMalformed, rep.id, id)
			c.fail(err)
			return failRest(err)
		}
		if rep.isError {
			settle("", &ServerError{Method: method, Text: rep.text})
		} else {
			settle(rep.text, nil)
		}
	}
	return res
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// ParseVersion reads the answer to "version": "3.1.0".
// It takes the last word of the first line of
// "ovs-vswitchd (Open vSwitch) 3.1.0\n" (DPDK builds add more lines).
func ParseVersion(out string) (string, error) {
	line, _, _ := strings.Cut(strings.TrimSpace(out), "\n")
	line = strings.TrimSpace(line)
	if v := line[strings.LastIndexAny(line, " \t")+1:]; v != "" {
		return v, nil
	}
	return "", fmt.Errorf("%w: empty answer to version", ErrMalformed)
}
