// Package kubetest runs a real kube-apiserver on a private etcd for one test,
// with static-token users, RBAC and all of its state in the test's temp dir.
package kubetest
