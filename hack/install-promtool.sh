#!/usr/bin/env bash
# Install promtool, which the alerts' unit tests run (`promtool test rules`),
# when it is missing. It comes from Debian's prometheus package, but only the
# promtool binary is taken out of it: installing the package would also add a
# prometheus user, enable a Prometheus server at boot and, on a host running
# systemd, start it. The tests need none of that.
set -o errexit -o nounset -o pipefail

if command -v promtool >/dev/null; then
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "install-promtool: promtool is missing and this is not a Debian-like system: install Prometheus's promtool with your package manager" >&2
  exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-promtool: promtool is missing; run as root: sudo hack/install-promtool.sh (it takes promtool out of Debian's prometheus package and installs nothing else)" >&2
  exit 1
fi
dest=/usr/local/bin
echo "install-promtool: installing promtool from Debian's prometheus package into $dest" >&2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
apt-get update -qq
# Downloaded as root into a private directory, which apt's sandbox user
# could not write to.
(cd "$work" && apt-get download -qq -o APT::Sandbox::User=root prometheus)
debs=("$work"/prometheus_*.deb)
dpkg-deb --fsys-tarfile "${debs[0]}" | tar -x -C "$work" ./usr/bin/promtool
install -m 0755 "$work/usr/bin/promtool" "$dest/promtool"
"$dest/promtool" --version >/dev/null
