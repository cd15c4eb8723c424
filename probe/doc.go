// Package probe publishes the gate's status: the atomic status file, the
// probe listener kubelet asks, and the separate Prometheus listener.
package probe
