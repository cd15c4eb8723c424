// Package deploy holds the Kubernetes manifests, the container image recipe and the systemd unit of ovsgate, and tests that they agree with the code.
package deploy
