#!/usr/bin/env bash
# Install Open vSwitch (Debian's openvswitch-switch) when ovsdb-server is
# missing. It only installs the programs: it starts no system OVS.
set -o errexit -o nounset -o pipefail

if command -v ovsdb-server >/dev/null && command -v ovs-vswitchd >/dev/null && command -v ovs-vsctl >/dev/null; then
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "install-ovs: Open vSwitch is missing and this is not a Debian-like system: install openvswitch-switch (ovsdb-server, ovs-vswitchd, ovs-vsctl) with your package manager" >&2
  exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-ovs: Open vSwitch is missing; run as root: sudo apt-get update && sudo apt-get install -y openvswitch-switch" >&2
  exit 1
fi
echo "install-ovs: installing openvswitch-switch" >&2
# apt-install.sh keeps the package from starting a system OVS on hosts that
# would (a policy-rc.d for the length of the install).
"$(dirname "$0")/apt-install.sh" openvswitch-switch
command -v ovsdb-server >/dev/null
