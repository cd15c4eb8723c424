package appctl

import "context"

// What only tests use: a call at a time, and a smaller reply cap.

// WithMaxReplySize sets the reply size cap (default 16 MiB); n <= 0 keeps
// the default.
func WithMaxReplySize(n int) Option {
	return func(o *options) {
		if n > 0 {
			o.maxReply = n
		}
	}
}

// Call is a Batch of one.
func (c *Conn) Call(ctx context.Context, method string, args ...string) (string, error) {
	res := c.roundTrip(ctx, []Request{{Method: method, Args: args}})
	return res[0].Text, res[0].Err
}

// Version asks for ovs-vswitchd's version: "3.1.0".
func (c *Conn) Version(ctx context.Context) (string, error) { return call(ctx, c, Version()) }

// DPFeatures asks for and parses dpif/show-dp-features of bridge.
func (c *Conn) DPFeatures(ctx context.Context, bridge string) (Features, error) {
	return call(ctx, c, DPFeatures(bridge))
}

func call[T any](ctx context.Context, c *Conn, cmd Command[T]) (T, error) {
	return cmd.Read(c.roundTrip(ctx, []Request{cmd.Request})[0])
}
