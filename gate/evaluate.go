package gate

import "context"

// Evaluate runs a gate once: until every check has had a definite answer, or
// ctx is done. The OVSDB connection and the unixctl calls proceed
// concurrently, so a slow ovs-vswitchd does not add to the OVSDB round trips.
// complete is false when ctx ended the evaluation first.
func Evaluate(ctx context.Context, cfg Config) (s Status, complete bool, err error) {
	g, err := New(cfg)
	if err != nil {
		return Status{}, false, err
	}
	stop := g.Start(ctx)
	select {
	case <-g.Settled():
		complete = true
	case <-ctx.Done():
	}
	stop()
	return g.Status(), complete, nil
}
