// Package e2e runs ovsgate with the real Kubernetes components that act on its
// node condition (etcd, kube-apiserver, kube-scheduler and
// node-readiness-controller) against a sandbox Open vSwitch, and shows when
// a node becomes schedulable. It holds only tests.
package e2e
