package main

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// fileEvents tells when a file in a directory is replaced or written, so
// that the bench waits for ovsgate's status file without polling it: a
// poll loop every 100 µs steals the CPU the daemon it measures needs on a
// 2-core machine, and shows up as latency.
type fileEvents struct {
	f  *os.File
	ch chan struct{}
}

func watchDir(dir string) (*fileEvents, error) {
	// Non-blocking, so that Go's poller owns the descriptor and close
	// ends the reader below at once instead of at the next event.
	fd, err := syscall.InotifyInit1(syscall.IN_CLOEXEC | syscall.IN_NONBLOCK)
	if err != nil {
		return nil, err
	}
	if _, err := syscall.InotifyAddWatch(fd, dir, syscall.IN_MOVED_TO|syscall.IN_CLOSE_WRITE); err != nil {
		syscall.Close(fd)
		return nil, err
	}
	w := &fileEvents{f: os.NewFile(uintptr(fd), "inotify"), ch: make(chan struct{}, 1)}
	go func() {
		buf := make([]byte, 4096)
		for {
			if _, err := w.f.Read(buf); err != nil {
				close(w.ch)
				return
			}
			select {
			case w.ch <- struct{}{}:
			default:
			}
		}
	}()
	return w, nil
}

// waitFor returns once cond holds, checking it at once, at every event in
// the directory and at least every interval, or false after d.
func (w *fileEvents) waitFor(d, interval time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	t := time.NewTimer(interval)
	defer t.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		t.Reset(interval)
		select {
		case <-w.ch:
		case <-t.C:
		}
	}
	return true
}

func (w *fileEvents) close() { _ = w.f.Close() }

// statusEvents watches the directory of the status file.
func statusEvents(statusFile string) (*fileEvents, error) {
	w, err := watchDir(filepath.Dir(statusFile))
	if err != nil {
		return nil, errors.Join(errors.New("watch the status file's directory"), err)
	}
	return w, nil
}
