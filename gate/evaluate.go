package gate

import (
	"cmp"
	"context"
	"fmt"
	"time"
)

// Evaluate runs a gate once, until it has settled (every check has had a
// definite answer), for at most timeout (0: no limit) or until ctx is done.
// The OVSDB connection and the unixctl calls proceed concurrently, so a
// slow ovs-vswitchd does not add to the OVSDB round trips. A state not
// settled in time says so in its reason.
func Evaluate(ctx context.Context, cfg Config, timeout time.Duration) (State, error) {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
		// Leave time within the timeout to tell a stalled ovs-vswitchd
		// busy from hung, rather than end on "no answer yet".
		cfg.CallTimeout = min(cmp.Or(cfg.CallTimeout, DefaultCallTimeout), timeout/2)
	}
	g, err := New(cfg)
	if err != nil {
		return State{}, err
	}
	updates := g.Subscribe()
	stop := g.Start(ctx)
wait:
	for {
		select {
		case st := <-updates:
			if st.Settled {
				break wait
			}
		case <-ctx.Done():
			break wait
		}
	}
	stop()
	st := g.State()
	if !st.Settled && !st.Ready {
		st.Reason = fmt.Sprintf("evaluation incomplete after %s: %s", timeout, st.Reason)
	}
	return st, nil
}
