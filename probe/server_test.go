package probe

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ovsgate/ovsgate/internal/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestNewServerLimits(t *testing.T) {
	srv := NewServer(http.NotFoundHandler(), nil)
	assert.Equal(t, 8<<10, srv.MaxHeaderBytes)
	for name, d := range map[string]time.Duration{
		"ReadHeaderTimeout": srv.ReadHeaderTimeout, "ReadTimeout": srv.ReadTimeout,
		"WriteTimeout": srv.WriteTimeout, "IdleTimeout": srv.IdleTimeout,
	} {
		assert.Positive(t, d, name)
		assert.LessOrEqual(t, d, time.Minute, name)
	}
}

func TestListenPortInUse(t *testing.T) {
	ln, err := Listen("127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	addr := ln.Addr().String()
	_, err = Listen(addr)
	require.Error(t, err)
	assert.Equal(t, "listen on "+addr+": address already in use", err.Error())
	assert.ErrorIs(t, err, syscall.EADDRINUSE)

	_, err = Listen("127.0.0.1:http-nope")
	require.Error(t, err)
	assert.True(t, strings.HasPrefix(err.Error(), "listen on 127.0.0.1:http-nope: "), err.Error())
}

// Serve returns nil soon after its context ends, even with an idle
// keep-alive connection open, and the port is free again.
func TestServeStopsOnCancel(t *testing.T) {
	p := NewProbe(nil)
	p.Update(status(true))
	ln, err := Listen("127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	stop := startServe(t, NewServer(p, nil), ln)

	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	resp, err := client.Get("http://" + addr + "/readyz")
	require.NoError(t, err)
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	assert.Equal(t, 200, resp.StatusCode)

	require.NoError(t, stop())
	ln2, err := Listen(addr)
	require.NoError(t, err, "the listener is closed")
	ln2.Close()
}

func TestServeErrors(t *testing.T) {
	t.Run("closed listener", func(t *testing.T) {
		ln, err := Listen("127.0.0.1:0")
		require.NoError(t, err)
		require.NoError(t, ln.Close())
		err = Serve(context.Background(), NewServer(http.NotFoundHandler(), nil), ln)
		require.Error(t, err)
		assert.ErrorIs(t, err, net.ErrClosed)
	})
	t.Run("shut down elsewhere", func(t *testing.T) {
		ln, err := Listen("127.0.0.1:0")
		require.NoError(t, err)
		srv := NewServer(http.NotFoundHandler(), nil)
		done := make(chan error, 1)
		go func() { done <- Serve(context.Background(), srv, ln) }()
		// Shutdown may come before Serve started: then Serve fails at once
		// with ErrServerClosed, which is just as clean.
		require.NoError(t, srv.Shutdown(context.Background()))
		select {
		case err := <-done:
			assert.NoError(t, err)
		case <-time.After(10 * time.Second):
			t.Fatal("Serve did not return after Shutdown")
		}
	})
}

// A client that sends part of its header and stalls is cut off after
// ReadHeaderTimeout, while others are served.
func TestSlowHeaderClientIsCutOff(t *testing.T) {
	p := NewProbe(nil)
	p.Update(status(true))
	const timeout = 200 * time.Millisecond
	addr, logBuf := serveOn(t, p, WithReadHeaderTimeout(timeout))
	conns := make([]net.Conn, 20)
	for i := range conns {
		c, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		defer c.Close()
		_, err = c.Write([]byte("GET /readyz HTTP/1.1\r\nHost: x\r\nX-Slow: "))
		require.NoError(t, err)
		conns[i] = c
	}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get("http://" + addr + "/readyz")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 200, resp.StatusCode, "a normal client is served meanwhile")
	for _, c := range conns {
		require.NoError(t, c.SetReadDeadline(time.Now().Add(10*time.Second)))
		b, err := io.ReadAll(c) // ends when the server closes the connection
		assert.NoError(t, err, "the server must close a stalled connection itself")
		assert.NotContains(t, string(b), "200 OK")
	}
	assert.Empty(t, logBuf.String())
}

func TestOversizedHeadersRefused(t *testing.T) {
	p := NewProbe(nil)
	p.Update(status(true))
	addr, _ := serveOn(t, p)
	for _, size := range []int{16 << 10, 64 << 10} {
		c, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		fmt.Fprintf(c, "GET /readyz HTTP/1.1\r\nHost: x\r\nX-Big: %s\r\n\r\n", strings.Repeat("a", size))
		require.NoError(t, c.SetReadDeadline(time.Now().Add(10*time.Second)))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		require.NoError(t, err)
		resp.Body.Close()
		c.Close()
		assert.Equal(t, http.StatusRequestHeaderFieldsTooLarge, resp.StatusCode, "%d bytes", size)
	}
	// A header of ordinary size is fine.
	req, err := http.NewRequest("GET", "http://"+addr+"/readyz", nil)
	require.NoError(t, err)
	req.Header.Set("X-Some", strings.Repeat("a", 2<<10))
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 200, resp.StatusCode)
}

// The error log given to NewServer is the one the server uses.
func TestNewServerErrorLog(t *testing.T) {
	var buf testutil.SyncBuffer
	twice := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(200)
		w.WriteHeader(503)
	})
	ln, err := Listen("127.0.0.1:0")
	require.NoError(t, err)
	stop := startServe(t, NewServer(twice, log.New(&buf, "", 0)), ln)
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get("http://" + ln.Addr().String() + "/")
	require.NoError(t, err)
	resp.Body.Close()
	require.NoError(t, stop())
	assert.Contains(t, buf.String(), "superfluous", "the log the flip test watches does catch the bug")
}
