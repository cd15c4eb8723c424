package appctl

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
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
func WithObserver(f func(method string, d time.Duration, err error)) Option {
	return func(o *options) { o.observer = f }
}

// WithMaxReplySize sets the reply size cap (default 16 MiB).
func WithMaxReplySize(n int) Option {
	return func(o *options) {
		if n > 0 {
			o.maxReply = n
		}
	}
}

// Conn is one connection to a unixctl server. It serves any number of
// sequential calls and, held open while idle, notices when the server goes
// away: Done is closed at once on EOF.
type Conn struct {
	nc     net.Conn
	opts   options
	callMu sync.Mutex // one request in flight at a time
	nextID uint64     // guarded by callMu
	buf    []byte     // request buffer, guarded by callMu

	replies  chan []byte // frames read by the reader goroutine
	done     chan struct{}
	errMu    sync.Mutex
	err      error
	readerWG sync.WaitGroup
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
		return nil, classifyDialError(ctx, socket, err)
	}
	c := &Conn{nc: nc, opts: o, replies: make(chan []byte, 1), done: make(chan struct{})}
	c.readerWG.Add(1)
	go c.readLoop()
	return c, nil
}

func classifyDialError(ctx context.Context, socket string, err error) error {
	switch {
	case ctx.Err() != nil:
		return &timeoutError{op: "connect to " + socket, cause: ctx.Err()}
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("%w: %s refuses connections (process gone?)", ErrUnreachable, socket)
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("%w: no control socket %s", ErrUnreachable, socket)
	case errors.Is(err, os.ErrPermission):
		return fmt.Errorf("%w: permission denied on %s", ErrUnreachable, socket)
	default:
		return fmt.Errorf("%w: %v", ErrUnreachable, err)
	}
}

// Done is closed once the connection is lost: the server closed it (for
// instance because ovs-vswitchd exited), an I/O error, a timeout, or Close.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Err says why Done was closed; nil while the connection is open.
func (c *Conn) Err() error {
	c.errMu.Lock()
	defer c.errMu.Unlock()
	return c.err
}

// Close closes the connection and waits for its reader to stop.
func (c *Conn) Close() error {
	c.fail(errClosed)
	c.readerWG.Wait()
	return nil
}

var errClosed = fmt.Errorf("%w: connection closed", ErrUnreachable)

// fail records the first reason the connection ended and closes it.
func (c *Conn) fail(err error) {
	c.errMu.Lock()
	defer c.errMu.Unlock()
	if c.err != nil {
		return
	}
	c.err = err
	close(c.done)
	c.nc.Close()
}

func (c *Conn) readLoop() {
	defer c.readerWG.Done()
	r := bufio.NewReaderSize(c.nc, 4096)
	for {
		frame, err := readObject(r, c.opts.maxReply)
		if err != nil {
			switch {
			case errors.Is(err, io.EOF):
				err = fmt.Errorf("%w: server closed the connection", ErrUnreachable)
			case errors.Is(err, ErrMalformed):
			default:
				err = fmt.Errorf("%w: read: %v", ErrUnreachable, err)
			}
			c.fail(err)
			return
		}
		select {
		case c.replies <- frame:
		default:
			c.fail(fmt.Errorf("%w: unsolicited reply", ErrMalformed))
			return
		}
	}
}

// Call sends one request and waits for its reply; ctx's deadline bounds the
// write and the wait. A timeout closes the connection, since a late reply
// would be taken for the answer to the next call.
func (c *Conn) Call(ctx context.Context, method string, args ...string) (string, error) {
	start := time.Now()
	result, err := c.call(ctx, method, args)
	if c.opts.observer != nil {
		c.opts.observer(method, time.Since(start), err)
	}
	return result, err
}

func (c *Conn) call(ctx context.Context, method string, args []string) (string, error) {
	c.callMu.Lock()
	defer c.callMu.Unlock()
	select {
	case <-c.done:
		return "", c.Err()
	default:
	}
	c.nextID++
	id := c.nextID
	c.buf = appendRequest(c.buf[:0], method, args, id)
	if dl, ok := ctx.Deadline(); ok {
		_ = c.nc.SetWriteDeadline(dl)
	} else {
		_ = c.nc.SetWriteDeadline(time.Time{})
	}
	if _, err := c.nc.Write(c.buf); err != nil {
		if ctx.Err() != nil || isTimeout(err) {
			terr := &timeoutError{op: method, cause: ctx.Err()}
			c.fail(terr)
			return "", terr
		}
		err = fmt.Errorf("%w: write: %v", ErrUnreachable, err)
		c.fail(err)
		return "", err
	}
	select {
	case frame := <-c.replies:
		result, err := parseReply(frame, id)
		if err != nil && errors.Is(err, ErrMalformed) {
			c.fail(err)
		}
		if err != nil {
			var se *ServerError
			if errors.As(err, &se) {
				se.Method = method
			}
		}
		return result, err
	case <-c.done:
		// The reader may have queued the reply just before the connection ended.
		select {
		case frame := <-c.replies:
			return parseReply(frame, id)
		default:
		}
		return "", c.Err()
	case <-ctx.Done():
		terr := &timeoutError{op: method, cause: ctx.Err()}
		c.fail(terr)
		return "", terr
	}
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
	return parseVersion(out), nil
}

// parseVersion takes the last word of the first line of
// "ovs-vswitchd (Open vSwitch) 3.1.0\n".
func parseVersion(out string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(out), "\n")
	fields := strings.Fields(line)
	if len(fields) == 0 {
		return ""
	}
	return fields[len(fields)-1]
}

// DPFeatures asks for and parses dpif/show-dp-features of bridge.
func (c *Conn) DPFeatures(ctx context.Context, bridge string) (Features, error) {
	out, err := c.Call(ctx, "dpif/show-dp-features", bridge)
	if err != nil {
		return nil, err
	}
	return ParseDPFeatures(out)
}

// appendRequest writes {"id":N,"method":M,"params":[...]} without reflection.
func appendRequest(b []byte, method string, args []string, id uint64) []byte {
	b = append(b, `{"id":`...)
	b = strconv.AppendUint(b, id, 10)
	b = append(b, `,"method":`...)
	b = appendJSONString(b, method)
	b = append(b, `,"params":[`...)
	for i, a := range args {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, a)
	}
	return append(b, "]}"...)
}
