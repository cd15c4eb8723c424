package appctl

import "fmt"

// Command is one unixctl command of ovs-vswitchd: the request that asks it,
// and the parser of its answer. Send the Request in a Batch, then Read its
// Result.
type Command[T any] struct {
	Request
	parse func(text string) (T, error)
}

// Version asks for ovs-vswitchd's version: "3.1.0".
func Version() Command[string] {
	return Command[string]{Request{Method: "version"}, ParseVersion}
}

// DPFeatures asks for the datapath features of bridge.
func DPFeatures(bridge string) Command[Features] {
	return Command[Features]{Request{Method: "dpif/show-dp-features", Args: []string{bridge}}, ParseDPFeatures}
}

// DPIFShow asks which ports the datapaths have opened; its answer is the
// OpenFlow port number of each of the named ports that is listed.
func DPIFShow(ports []string) Command[map[string]int] {
	return Command[map[string]int]{Request{Method: "dpif/show"}, func(text string) (map[string]int, error) {
		return ParseDPIFShow(text, ports)
	}}
}

// Read takes the command's answer out of its Result: the parsed answer, or
// the Result's error (a *ServerError for an error reply), or why the answer
// cannot be read, prefixed with the method.
func (c Command[T]) Read(r Result) (T, error) {
	if r.Err != nil {
		var zero T
		return zero, r.Err
	}
	v, err := c.parse(r.Text)
	if err != nil {
		return v, fmt.Errorf("%s: %w", c.Method, err)
	}
	return v, nil
}
