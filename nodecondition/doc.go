// Package nodecondition keeps one condition on one Kubernetes Node in step
// with the gate's status, so that the scheduler and taint controllers can see
// whether Open vSwitch is ready on that node.
package nodecondition
