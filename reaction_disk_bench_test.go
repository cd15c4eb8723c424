package main

import (
	"bytes"
	"context"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"k8s.io/klog/v2"

	"github.com/ovsgate/ovsgate/internal/ovstest"
	"github.com/ovsgate/ovsgate/probe"
)

// BenchmarkServeReaction measures serve's reaction as its readers see it:
// from `ovs-vsctl add-br` returning to /readyz answering 200, and to the
// status file saying ready, with the file on this machine's disk and on
// tmpfs. add-br makes the gate publish "waiting for datapath ID" a moment
// before "ready", so a status file write that holds up what comes after it
// shows here.
func BenchmarkServeReaction(b *testing.B) {
	klog.LogToStderr(false)
	klog.SetOutput(io.Discard)
	defer klog.LogToStderr(true)
	for _, fs := range []struct{ name, dir string }{{"disk", os.TempDir()}, {"tmpfs", "/dev/shm"}} {
		b.Run(fs.name, func(b *testing.B) {
			var st syscall.Statfs_t
			if err := syscall.Statfs(fs.dir, &st); err != nil {
				b.Fatal(err)
			}
			const tmpfsMagic = 0x01021994
			if (st.Type == tmpfsMagic) != (fs.name == "tmpfs") {
				b.Fatalf("%s is not on %s here", fs.dir, fs.name)
			}
			dir, err := os.MkdirTemp(fs.dir, "ovsgate-bench")
			if err != nil {
				b.Fatal(err)
			}
			defer os.RemoveAll(dir)
			benchReaction(b, filepath.Join(dir, "status.json"))
		})
	}
}

func benchReaction(b *testing.B, statusFile string) {
	s := ovstest.Start(b)
	ln, err := probe.Listen("127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	o := &serveOptions{gateOptions: gateOptions{ovsdb: s.Endpoint(), ovsRunDir: s.RunDir(),
		bridges: []string{"br-int"}, statusFile: statusFile}, metricsAddr: "0"}
	if err := o.validate(); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- o.serve(ctx, nil, ln, nil) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			b.Error(err)
		}
	}()

	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	url := "http://" + ln.Addr().String() + "/readyz"
	probeReady := func() bool {
		resp, err := client.Get(url)
		if err != nil {
			return false
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}
	fileReady := func() bool {
		b, err := os.ReadFile(statusFile)
		return err == nil && bytes.Contains(b, []byte(`"ready": true`))
	}
	// until polls both readers until each says want, and returns how long
	// each took from start.
	until := func(start time.Time, want bool) (probeAt, fileAt time.Duration) {
		probeAt, fileAt = -1, -1
		for probeAt < 0 || fileAt < 0 {
			if probeAt < 0 && probeReady() == want {
				probeAt = time.Since(start)
			}
			if fileAt < 0 && fileReady() == want {
				fileAt = time.Since(start)
			}
			if time.Since(start) > 20*time.Second {
				b.Fatalf("ready=%v not seen by both readers", want)
			}
			time.Sleep(50 * time.Microsecond)
		}
		return probeAt, fileAt
	}

	const trials = 100
	var probes, files []time.Duration
	for b.Loop() {
		for range trials {
			s.DelBridge("br-int")
			until(time.Now(), false)
			s.AddBridge("br-int") // returns once ovs-vswitchd applied the bridge
			p, f := until(time.Now(), true)
			probes, files = append(probes, p), append(files, f)
		}
	}
	report := func(all []time.Duration, unit string) {
		slices.Sort(all)
		at := func(q float64) float64 {
			return float64(all[int(math.Ceil(q*float64(len(all))))-1].Microseconds()) / 1000
		}
		b.ReportMetric(at(0.5), "p50-"+unit)
		b.ReportMetric(at(0.99), "p99-"+unit)
	}
	report(probes, "probe-ms")
	report(files, "file-ms")
}
