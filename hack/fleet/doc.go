// Package fleet holds the fleet benchmark (make bench-fleet): a thousand
// simulated nodes, each with ovsgate's own node-condition writer and client,
// against a real kube-apiserver on etcd, measured beside as many simulated
// kubelets.
package fleet
