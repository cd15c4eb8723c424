package ovsdb

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ovsgate/ovsgate/internal/testutil"
)

// proxy sits between the watcher and ovsdb-server on a unix socket: it
// records what the client sends and what the server sends, and can cut each
// connection right after the monitor reply.
type proxy struct {
	path             string
	target           string
	dropAfterMonitor bool

	ln         net.Listener
	wg         sync.WaitGroup
	fromServer atomic.Int64
	mu         sync.Mutex
	fromClient bytes.Buffer
	toClient   bytes.Buffer // what the server sent, as fromServer counts it
}

func newProxy(t *testing.T, target string, dropAfterMonitor bool) *proxy {
	t.Helper()
	dir := testutil.ShortTempDir(t, "proxy")
	p := &proxy{path: filepath.Join(dir, "p.sock"), target: target, dropAfterMonitor: dropAfterMonitor}
	var err error
	p.ln, err = net.Listen("unix", p.path)
	require.NoError(t, err)
	p.wg.Add(1)
	go p.accept()
	// Registered before the watcher's cleanup, so it runs after Run returned.
	t.Cleanup(func() { p.ln.Close(); p.wg.Wait() })
	return p
}

func (p *proxy) endpoint() string { return "unix:" + p.path }

func (p *proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("unix", p.target)
		if err != nil {
			c.Close()
			continue
		}
		var monitorSent atomic.Bool
		p.wg.Add(2)
		go func() {
			defer p.wg.Done()
			defer s.Close()
			buf := make([]byte, 32<<10)
			for {
				n, err := c.Read(buf)
				if n > 0 {
					p.mu.Lock()
					p.fromClient.Write(buf[:n])
					p.mu.Unlock()
					if bytes.Contains(buf[:n], []byte(`"monitor_cond"`)) {
						monitorSent.Store(true)
					}
					if _, err := s.Write(buf[:n]); err != nil {
						return
					}
				}
				if err != nil {
					return
				}
			}
		}()
		go func() {
			defer p.wg.Done()
			defer c.Close()
			buf := make([]byte, 32<<10)
			for {
				n, err := s.Read(buf)
				if n > 0 {
					p.mu.Lock()
					p.toClient.Write(buf[:n])
					p.fromServer.Add(int64(n))
					p.mu.Unlock()
					if _, err := c.Write(buf[:n]); err != nil {
						return
					}
					// The monitor request is marked before it is forwarded, so
					// what arrives after the mark is its reply or later.
					if p.dropAfterMonitor && monitorSent.Load() {
						s.Close()
						return
					}
				}
				if err != nil {
					return
				}
			}
		}()
	}
}

// requests decodes the JSON-RPC requests the clients sent.
func (p *proxy) requests(t *testing.T) []rpcRequest {
	t.Helper()
	var reqs []rpcRequest
	for _, m := range p.messages(t, &p.fromClient) {
		if m.Method != "" {
			reqs = append(reqs, m.rpcRequest)
		}
	}
	return reqs
}

// serverMessages decodes what the server sent (over one connection).
func (p *proxy) serverMessages(t *testing.T) []message {
	t.Helper()
	return p.messages(t, &p.toClient)
}

// message is a JSON-RPC message, with the count of bytes in its direction
// up to its end.
type message struct {
	rpcRequest
	raw json.RawMessage
	end int64
}

// messages decodes the JSON-RPC messages recorded in buf.
func (p *proxy) messages(t *testing.T, buf *bytes.Buffer) []message {
	t.Helper()
	p.mu.Lock()
	data := bytes.Clone(buf.Bytes())
	p.mu.Unlock()
	var msgs []message
	dec := json.NewDecoder(bytes.NewReader(data))
	for {
		var raw json.RawMessage
		err := dec.Decode(&raw)
		if errors.Is(err, io.EOF) {
			return msgs
		}
		require.NoError(t, err)
		m := message{raw: raw, end: dec.InputOffset()}
		require.NoError(t, json.Unmarshal(raw, &m.rpcRequest))
		msgs = append(msgs, m)
	}
}

type rpcRequest struct {
	Method string            `json:"method"`
	Params []json.RawMessage `json:"params"`
}
