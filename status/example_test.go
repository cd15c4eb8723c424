package status_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/ovsgate/ovsgate/status"
)

// write stands in for ovsgate: the file replaced by rename.
func write(path, body string) {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(body), 0o644); err != nil {
		panic(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		panic(err)
	}
}

const (
	notReadyFile = `{"ready": false, "reason": "bridge br-int: waiting for datapath ID",
  "updated": "2026-12-03T10:00:00.000000000Z",
  "ovsdb": {"endpoint": "unix:/var/run/openvswitch/db.sock", "connected": true},
  "vswitchd": {"pid": 1, "version": "3.1.0", "since": "2026-12-03T10:00:00.000000000Z", "flowRestoreWait": false},
  "bridges": [{"name": "br-int", "ready": false, "reason": "waiting for datapath ID", "datapathID": "", "datapathType": "system", "features": {}}],
  "checks": [{"name": "datapath/br-int", "ok": false, "message": "waiting for datapath ID"}]}`
	readyFile = `{"ready": true, "reason": "", "updated": "2026-12-03T10:00:01.000000000Z",
  "ovsdb": {"endpoint": "unix:/var/run/openvswitch/db.sock", "connected": true},
  "vswitchd": {"pid": 1, "version": "3.1.0", "since": "2026-12-03T10:00:00.000000000Z", "flowRestoreWait": false},
  "bridges": [{"name": "br-int", "ready": true, "reason": "", "datapathID": "0000aa", "datapathType": "system", "features": {"Recirc": true}}],
  "checks": [{"name": "datapath/br-int", "ok": true, "message": ""}]}`
	restartedFile = `{"ready": true, "reason": "", "updated": "2026-12-03T10:05:00.000000000Z",
  "ovsdb": {"endpoint": "unix:/var/run/openvswitch/db.sock", "connected": true},
  "vswitchd": {"pid": 1, "version": "3.1.0", "since": "2026-12-03T10:05:00.000000000Z", "flowRestoreWait": false},
  "bridges": [{"name": "br-int", "ready": true, "reason": "", "datapathID": "0000aa", "datapathType": "system", "features": {"Recirc": true}}],
  "checks": [{"name": "datapath/br-int", "ok": true, "message": ""}]}`
)

func ExampleRead() {
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "status.json")

	if _, err := status.Read(path); errors.Is(err, status.ErrMissing) {
		fmt.Println("no status yet")
	}
	write(path, notReadyFile)
	s, err := status.Read(path)
	if err != nil {
		panic(err)
	}
	fmt.Println(s.Ready, s.Reason)
	// Output:
	// no status yet
	// false bridge br-int: waiting for datapath ID
}

func ExampleWait() {
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "status.json")
	write(path, notReadyFile)
	go write(path, readyFile) // ovsgate sees the bridge

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := status.Wait(ctx, path)
	if err != nil {
		panic(err)
	}
	fmt.Println("ready:", s.Ready, "features:", s.Bridges[0].Features)
	// Output:
	// ready: true features: map[Recirc:true]
}

func ExampleWatch() {
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "status.json")
	write(path, readyFile)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events, err := status.Watch(ctx, path)
	if err != nil {
		panic(err)
	}
	for ev := range events {
		switch ev.Type {
		case status.Ready:
			fmt.Println("ready: install the flows")
			write(path, restartedFile) // ovs-vswitchd restarts
		case status.Restarted:
			fmt.Println("ovs-vswitchd restarted at", ev.Status.VSwitchd.Since.Format(time.TimeOnly)+": replay the flows")
			cancel()
		}
	}
	// Output:
	// ready: install the flows
	// ovs-vswitchd restarted at 10:05:00: replay the flows
}
