#!/usr/bin/env bash
# Build and locate node-readiness-controller for the end-to-end scheduling
# tests, from the upstream release archive that lies beside the checkout
# (never copied into this repository):
#
#   hack/node-readiness-controller.sh build   build the manager once and cache it; prints its path
#   hack/node-readiness-controller.sh path    print the cached binary's path; exit 1 when not built
#   hack/node-readiness-controller.sh crd     print the path of the release's NodeReadinessRule CRD
#
# The archive is ${NRC_ARCHIVE:-../shared/third_party/node-readiness-controller-v0.5.0.tar.gz}
# (relative to the repository); its dependencies come from the Go module proxy.
# The binary and the extracted source are cached outside the repository, keyed
# by version and by the archive's SHA-256, so a fresh clone on the same machine
# reuses them:
#   ${OVSGATE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ovsgate}/node-readiness-controller-v0.5.0
# A cold build takes about 5 minutes on 2 cores; a cached one costs nothing.
set -o errexit -o nounset -o pipefail

version=v0.5.0
repo=$(cd "$(dirname "$0")/.." && pwd)
archive=${NRC_ARCHIVE:-$repo/../shared/third_party/node-readiness-controller-$version.tar.gz}
cache_dir=${OVSGATE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ovsgate}
bin=$cache_dir/node-readiness-controller-$version
src=$cache_dir/node-readiness-controller-$version-src

die() { echo "node-readiness-controller.sh: $*" >&2; exit 1; }

have_archive() {
  [ -f "$archive" ] || die "$archive not found: the release archive lies in shared/third_party beside the checkout (or set NRC_ARCHIVE)"
}

sum() { sha256sum "$archive" | cut -d' ' -f1; }

# built: the binary exists and was built from this very archive.
built() { [ -x "$bin" ] && [ -f "$bin.sha256" ] && [ "$(cat "$bin.sha256")" = "$(sum)" ]; }

extract() {
  # The CRD and RBAC come from the same extracted source as the binary.
  if [ ! -f "$src/.sha256" ] || [ "$(cat "$src/.sha256")" != "$(sum)" ]; then
    rm -rf "$src" "$src.tmp.$$"
    mkdir -p "$src.tmp.$$"
    tar -xzf "$archive" -C "$src.tmp.$$" --strip-components=1
    sum >"$src.tmp.$$/.sha256"
    mv "$src.tmp.$$" "$src"
  fi
}

build() {
  command -v go >/dev/null || die "go not found: install Go to build node-readiness-controller"
  have_archive
  mkdir -p "$cache_dir"
  # One build at a time per cache: a second caller waits and then finds the binary.
  exec 9>"$cache_dir/.node-readiness-controller-$version.lock"
  flock 9
  extract
  if built; then
    echo "$bin"
    return
  fi
  echo "node-readiness-controller.sh: building node-readiness-controller $version (cold: about 5 min)" >&2
  trap "rm -f '$bin.tmp.$$'" EXIT
  (cd "$src" && GOWORK=off GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$bin.tmp.$$" ./cmd)
  mv -f "$bin.tmp.$$" "$bin"
  sum >"$bin.sha256"
  echo "$bin"
}

case ${1:-} in
build) build ;;
path)
  have_archive
  built || die "node-readiness-controller $version not built: run hack/node-readiness-controller.sh build (or make test)"
  echo "$bin"
  ;;
crd)
  have_archive
  mkdir -p "$cache_dir"
  exec 9>"$cache_dir/.node-readiness-controller-$version.lock"
  flock 9
  extract
  echo "$src/config/crd/bases/readiness.node.x-k8s.io_nodereadinessrules.yaml"
  ;;
*)
  echo "usage: $0 build|path|crd" >&2
  exit 2
  ;;
esac
