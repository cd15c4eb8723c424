package probe

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"time"
)

// Default listener addresses, chosen outside the ranges of common node
// agents because the DaemonSet runs on the host network.
const (
	DefaultProbeAddr   = ":9476"
	DefaultMetricsAddr = ":9477"
)

// Server timeouts. Probes are tiny requests on a local network; nothing here
// needs to wait long, and a slow client must not hold a connection.
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 10 * time.Second
	writeTimeout      = 10 * time.Second
	idleTimeout       = 60 * time.Second
	maxHeaderBytes    = 8 << 10
	shutdownTimeout   = 5 * time.Second
)

// Listen binds addr (HOST:PORT or :PORT) over TCP, so that a port in use is
// a clear error before anything starts: "listen on :9476: address already
// in use". The error still matches syscall.EADDRINUSE with errors.Is.
func Listen(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		// Drop "listen tcp :9476: bind: ", which only repeats what we say.
		var oe *net.OpError
		if errors.As(err, &oe) && oe.Err != nil {
			err = oe.Err
		}
		var se *os.SyscallError
		if errors.As(err, &se) && se.Err != nil {
			err = se.Err
		}
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	return ln, nil
}

// NewServer returns an http.Server for h with every timeout set and a small
// header limit; errorLog (nil: the standard logger) receives the server's
// own complaints, such as a handler writing its header twice.
func NewServer(h http.Handler, errorLog *log.Logger) *http.Server {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          errorLog,
		// Let "OPTIONS *" reach the handler, which refuses it like any
		// method but GET and HEAD.
		DisableGeneralOptionsHandler: true,
	}
	return srv
}

// Serve serves ln until ctx is done, then shuts down gracefully within a
// deadline, closing whatever is still open after it. It returns nil after a
// clean shutdown (also one started by srv.Shutdown elsewhere) and an error
// if serving failed or requests were cut off. It closes ln.
func Serve(ctx context.Context, srv *http.Server, ln net.Listener) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	if err != nil {
		srv.Close()
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}
