// Package hack holds the tests of the development scripts in this folder, the sandbox OVS (ovs-sandbox.sh) and make run (run.sh), run against a real Open vSwitch.
package hack
