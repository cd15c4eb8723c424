// Command agent is an example of a CNI agent that reads ovsgate's status
// file with the status package: it waits until Open vSwitch is ready, then
// replays its flows on every restart of ovs-vswitchd, and says when the
// gate goes away. A real agent would install its flows where this one logs.
//
//	agent [-status-file /var/run/ovsgate/status.json]
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"

	"github.com/ovsgate/ovsgate/status"
)

func main() {
	path := flag.String("status-file", status.DefaultPath, "ovsgate's status file")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *path); err != nil && ctx.Err() == nil {
		fmt.Fprintln(os.Stderr, "agent:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, path string) error {
	// One watch from the start: a restart between a Wait and a later Watch
	// would be missed.
	events, err := status.Watch(ctx, path)
	if err != nil {
		return err
	}
	log.Printf("waiting for Open vSwitch (%s)", path)
	installed := false
	for ev := range events {
		switch ev.Type {
		case status.Ready:
			if !installed {
				installed = true
				log.Printf("Open vSwitch ready (ovs-vswitchd %s, pid %d): installing flows", ev.Status.VSwitchd.Version, ev.Status.VSwitchd.PID)
				continue
			}
			log.Printf("Open vSwitch ready")
		case status.Restarted:
			// The new instance has none of the flows installed in the old one.
			if installed {
				log.Printf("ovs-vswitchd restarted (pid %d, since %s): replaying flows",
					ev.Status.VSwitchd.PID, ev.Status.VSwitchd.Since.UTC().Format("15:04:05.000"))
			}
		case status.NotReady:
			log.Printf("Open vSwitch not ready: %s", ev.Status.Reason)
		case status.Stopped:
			log.Printf("ovsgate stopped: nothing watches Open vSwitch until it is back")
		case status.Missing, status.Error:
			log.Printf("status file: %v", ev.Err)
		}
	}
	return ctx.Err()
}
