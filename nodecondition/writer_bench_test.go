package nodecondition_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"k8s.io/client-go/rest"

	"github.com/ovsgate/ovsgate/gate"
	"github.com/ovsgate/ovsgate/nodecondition"
)

// BenchmarkUpdate measures what the gate pays to hand the writer a state
// (alternately a ready and a not ready one, as a flapping gate would) while
// the writer waits on a request that the API server never answers: the
// median, 99th percentile and largest time of one call.
func BenchmarkUpdate(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		<-r.Context().Done()
		panic(http.ErrAbortHandler) // never an answer
	}))
	defer srv.Close()
	cfg := nodecondition.Config{Node: "bench", Type: condType, Heartbeat: time.Hour, MergeWindow: time.Millisecond, RequestTimeout: time.Hour}
	w, err := nodecondition.New(&rest.Config{Host: srv.URL}, cfg)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			b.Error(err)
		}
	}()
	w.Update(ready)

	states := []gate.Status{notReady, ready}
	var d []time.Duration
	for i := 0; b.Loop(); i++ {
		begin := time.Now()
		w.Update(states[i%2])
		d = append(d, time.Since(begin))
	}
	slices.Sort(d)
	n := len(d)
	b.ReportMetric(float64(d[n/2].Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(d[n*99/100].Nanoseconds()), "p99-ns")
	b.ReportMetric(float64(d[n-1].Nanoseconds()), "max-ns")
}
