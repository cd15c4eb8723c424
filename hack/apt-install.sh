#!/usr/bin/env bash
# apt-install.sh PACKAGE...: install Debian packages, as root, without
# starting any service they ship. For the length of the install,
# policy-rc.d answers 101 ("action forbidden") to every start the packages'
# maintainer scripts ask for, through invoke-rc.d or deb-systemd-invoke, so
# a host with an init system gets the programs and no system daemon (for
# openvswitch-switch: no system OVS). The policy the host had before, if
# any, is put back afterwards, whatever happens.
#
# Environment: POLICY_RC_D (default /usr/sbin/policy-rc.d), for tests.
set -o errexit -o nounset -o pipefail

die() { echo "apt-install.sh: $*" >&2; exit 1; }

[ "$#" -gt 0 ] || die "usage: apt-install.sh PACKAGE..."
command -v apt-get >/dev/null || die "apt-get not found: this is not a Debian-like system"
[ "$(id -u)" -eq 0 ] || die "run as root: sudo $0 $*"

policy=${POLICY_RC_D:-/usr/sbin/policy-rc.d}
saved=''
if [ -e "$policy" ] || [ -L "$policy" ]; then
  saved=$(mktemp "$policy.saved.XXXXXX")
  mv -f "$policy" "$saved"
fi
# shellcheck disable=SC2317 # runs from the trap
restore() {
  if [ -n "$saved" ]; then
    mv -f "$saved" "$policy"
  else
    rm -f "$policy"
  fi
}
trap restore EXIT
trap 'exit 1' HUP INT TERM # through the EXIT trap
printf '#!/bin/sh\n# Written by ovsgate hack/apt-install.sh for the length of an install.\nexit 101\n' >"$policy"
chmod 0755 "$policy"

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "$@" >/dev/null
