package status

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
)

// EventType says what changed in the status file.
type EventType int

const (
	// Ready: the file says ready, and the previous event said otherwise (or
	// this is the first status read).
	Ready EventType = iota + 1
	// NotReady: the file says not ready while ovsgate runs; Status.Reason
	// says why. Reported when readiness is lost, or at the first read.
	NotReady
	// Restarted: vswitchd.since changed, so another ovs-vswitchd instance
	// answers than the one seen before: whatever the agent installed in it
	// (flows, groups, meters) is gone and must be replayed. Reported before
	// the Ready or NotReady event of the same status, if any. A restart of
	// ovsgate itself also gives a new since (it cannot tell whether
	// ovs-vswitchd restarted while it was down), so the event may come
	// without an ovs-vswitchd restart: replaying is then harmless.
	Restarted
	// Stopped: the file was left by an ovsgate that exited (reason
	// "ovsgate stopped"); nothing watches Open vSwitch until it starts again.
	Stopped
	// Missing: there is no file (ovsgate not started, its directory not
	// mounted, or the file removed); Err says which.
	Missing
	// Error: the file exists but is not a status (Err says why). The watch
	// goes on and reports the next good status as usual.
	Error
)

func (t EventType) String() string {
	switch t {
	case Ready:
		return "ready"
	case NotReady:
		return "not ready"
	case Restarted:
		return "ovs-vswitchd restarted"
	case Stopped:
		return "ovsgate stopped"
	case Missing:
		return "no status file"
	case Error:
		return "error"
	}
	return fmt.Sprintf("EventType(%d)", int(t))
}

// Event is one change seen in the status file.
type Event struct {
	Type EventType
	// Status is the status that shows the change; the zero Status for
	// Missing and Error.
	Status Status
	// Err is set for Missing and Error.
	Err error
}

const (
	// pollInterval is how often the file is read even without a
	// notification: a safety net for file systems that do not report
	// changes, and the pace at which a missing directory is looked for
	// when no notification can tell. Reading a few KiB once a second costs
	// nothing.
	pollInterval = time.Second
	// maxQueue bounds the events held for a receiver that does not read;
	// beyond it the oldest are dropped and an Error event says so.
	maxQueue = 1024
)

// readHook, when set by a test, runs after each read of the file.
var readHook func()

// ErrDropped is the Err of the Error event that replaces events dropped
// because the receiver did not read them.
var ErrDropped = errors.New("events dropped: the receiver is not reading")

// Watch reports the changes of the status file at path until ctx ends,
// then closes the channel; by then nothing of the watch is left running.
//
// The first event is the file's state when Watch starts (Ready, NotReady,
// Stopped, Missing or Error). The file's directory is watched, so a
// replacement is seen at once, also when the file or its directory appears
// only later. Every status file ovsgate writes is read as it comes, whether
// or not the receiver keeps up: events wait in an internal queue rather than
// being lost, so a restart shown by one write is reported even if the next
// write follows at once.
func Watch(ctx context.Context, path string) (<-chan Event, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("watch %s: %w", path, err)
	}
	fsw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watch %s: %w", path, err)
	}
	w := &watcher{path: abs, dir: filepath.Dir(abs), fsw: fsw}
	ch := make(chan Event)
	go w.run(ctx, ch)
	return ch, nil
}

// Wait returns the first ready status in the file at path: at once if it
// says ready now, otherwise as soon as a replacement does. When ctx ends
// first, it returns the last status seen and an error with the last reason.
func Wait(ctx context.Context, path string) (Status, error) {
	ctx, cancel := context.WithCancel(ctx)
	ch, err := Watch(ctx, path)
	if err != nil {
		cancel()
		return Status{}, err
	}
	// Let the watch end before returning, so that nothing outlives the call.
	defer func() {
		cancel()
		for range ch {
		}
	}()
	var last Event
	for ev := range ch {
		if ev.Type == Ready {
			return ev.Status, nil
		}
		if ev.Type != Restarted {
			last = ev
		}
	}
	switch {
	case last.Type == 0:
		return Status{}, fmt.Errorf("wait for %s: %w", path, ctx.Err())
	case last.Err != nil:
		return Status{}, fmt.Errorf("wait for %s: %w (last: %w)", path, ctx.Err(), last.Err)
	default:
		return last.Status, fmt.Errorf("wait for %s: %w (last: not ready: %s)", path, ctx.Err(), last.Status.Reason)
	}
}

type watcher struct {
	path, dir string
	fsw       *fsnotify.Watcher

	watched    string // the directory watched: dir, or its deepest existing ancestor
	watchedIno uint64 // its inode: a directory removed and made again needs a new watch

	last    []byte     // the content last seen, so an unchanged file reports nothing
	state   EventType  // Ready, NotReady, Stopped or Missing; 0 before the first read
	since   *Timestamp // the last vswitchd.since seen
	lastErr string     // the last Error reported, so a bad file is reported once
	queue   []Event
}

func (w *watcher) run(ctx context.Context, ch chan<- Event) {
	defer close(ch)
	defer w.fsw.Close()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	w.refresh()
	for {
		var out chan<- Event
		var next Event
		if len(w.queue) > 0 {
			out, next = ch, w.queue[0]
		}
		select {
		case <-ctx.Done():
			return
		case out <- next:
			w.queue = w.queue[1:]
		case ev, ok := <-w.fsw.Events:
			if !ok {
				return
			}
			if w.watched != w.dir || ev.Name == w.path || ev.Name == w.dir {
				w.refresh()
			}
		case _, ok := <-w.fsw.Errors:
			// An overflowed notification queue loses events: read now.
			if !ok {
				return
			}
			w.refresh()
		case <-tick.C:
			w.refresh()
		}
	}
}

// refresh makes sure the right directory is watched, then reads the file
// and queues the events it shows.
func (w *watcher) refresh() {
	w.watch()
	b, err := readFile(w.path)
	if readHook != nil {
		defer readHook()
	}
	switch {
	case errors.Is(err, ErrMissing):
		w.last, w.lastErr = nil, ""
		if w.state != Missing {
			w.state = Missing
			w.emit(Event{Type: Missing, Err: err})
		}
		return
	case err != nil:
		w.fail(err)
		return
	case w.last != nil && bytes.Equal(b, w.last):
		return
	}
	w.last = b
	s, err := parse(w.path, b)
	if err != nil {
		w.fail(err)
		return
	}
	w.lastErr = ""
	if s.Stopped() {
		if w.state != Stopped {
			w.state = Stopped
			w.emit(Event{Type: Stopped, Status: s})
		}
		return
	}
	if since := s.VSwitchd.Since; since != nil {
		if w.since != nil && !w.since.Equal(since.Time) {
			w.emit(Event{Type: Restarted, Status: s})
		}
		w.since = since
	}
	state := NotReady
	if s.Ready {
		state = Ready
	}
	if state != w.state {
		w.state = state
		w.emit(Event{Type: state, Status: s})
	}
}

func (w *watcher) fail(err error) {
	if err.Error() != w.lastErr {
		w.lastErr = err.Error()
		w.emit(Event{Type: Error, Err: err})
	}
}

func (w *watcher) emit(ev Event) {
	if len(w.queue) >= maxQueue {
		w.queue = w.queue[1:]
		w.queue[0] = Event{Type: Error, Err: ErrDropped}
	}
	w.queue = append(w.queue, ev)
}

// watch watches the file's directory, or while it does not exist its
// deepest existing ancestor, so that its creation is seen.
func (w *watcher) watch() {
	if w.watched == w.dir && inode(w.dir) == w.watchedIno && w.watchedIno != 0 {
		return
	}
	if w.watched != "" {
		_ = w.fsw.Remove(w.watched) // gone already when the directory was removed
		w.watched, w.watchedIno = "", 0
	}
	for d := w.dir; ; d = filepath.Dir(d) {
		ino := inode(d)
		if ino != 0 && w.fsw.Add(d) == nil {
			w.watched, w.watchedIno = d, ino
			return
		}
		if d == filepath.Dir(d) {
			return // not even the root can be watched: the poll goes on
		}
	}
}

// inode returns dir's inode number, or 0 when it is not a directory.
func inode(dir string) uint64 {
	fi, err := os.Stat(dir)
	if err != nil || !fi.IsDir() {
		return 0
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Ino
	}
	return 1
}
