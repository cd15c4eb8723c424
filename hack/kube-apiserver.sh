#!/usr/bin/env bash
# Build, locate and run a real kube-apiserver (on Debian's etcd) for the
# integration tests in internal/kubetest, and the kube-scheduler of the same
# release for the end-to-end scheduling tests. No Docker, kind or envtest download.
# start, kubeconfig and stop also give a throwaway cluster to try the node
# condition by hand (README: "Try the node condition locally").
#
#   hack/kube-apiserver.sh build [COMPONENT]   build kube-apiserver (or kube-scheduler) once and cache it; prints its path
#   hack/kube-apiserver.sh path [COMPONENT]    print the cached binary's path; exit 1 when not built
#   hack/kube-apiserver.sh deps         install etcd (Debian's etcd-server) when missing
#   hack/kube-apiserver.sh start DIR    run etcd + kube-apiserver with their state in DIR
#   hack/kube-apiserver.sh kubeconfig DIR USER   write DIR/USER.kubeconfig for a static user of
#                                       DIR/tokens.csv (admin, ovsgate, nobody); prints its path
#   hack/kube-apiserver.sh stop  DIR    stop the daemons this script started in DIR
#
# start listens on 127.0.0.1:${KUBE_APISERVER_PORT:-6443}, etcd on
# 127.0.0.1:${ETCD_PORT:-2379} and, for its peers, ${ETCD_PEER_PORT:-ETCD_PORT+1}.
# The static users: admin (system:masters); ovsgate and nobody, bound to nothing.
#
# Each binary is cached outside the repository, keyed by version, so a fresh
# clone on the same machine reuses it:
#   ${OVSGATE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ovsgate}/COMPONENT-v1.37.2
# A cold kube-apiserver build takes 7 to 13 minutes on 2 cores and peaks at
# about 2.3 GB of compiler memory; kube-scheduler after it shares the Go build
# cache and takes 2 to 3 minutes. A cached binary costs nothing. Both builds
# take one lock, so concurrent callers never build the same module twice.
set -o errexit -o nounset -o pipefail

version=v1.37.2
# The staging modules (k8s.io/api, client-go, ...) are published as v0.MINOR.PATCH.
staging_version=v0.${version#v1.}
cache_dir=${OVSGATE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ovsgate}
component=kube-apiserver
bin=$cache_dir/$component-$version

die() { echo "kube-apiserver.sh: $*" >&2; exit 1; }

# pick COMPONENT sets component and bin; only the two this script knows.
pick() {
  case ${1:-kube-apiserver} in
  kube-apiserver | kube-scheduler) component=${1:-kube-apiserver} ;;
  *) die "unknown component \"$1\": kube-apiserver or kube-scheduler" ;;
  esac
  bin=$cache_dir/$component-$version
}

built() { [ -x "$bin" ] && "$bin" --version 2>/dev/null | grep -qx "Kubernetes $version"; }

build() {
  command -v go >/dev/null || die "go not found: install Go to build $component"
  mkdir -p "$cache_dir"
  # One build at a time per cache: a second caller waits and then finds the binary.
  exec 9>"$cache_dir/.kubernetes-$version.lock"
  flock 9
  if built; then
    echo "$bin"
    return
  fi

  local tmp src
  tmp=$(mktemp -d "${TMPDIR:-/tmp}/kube-apiserver-build.XXXXXX")
  # The copied module is read-only until chmod; make it writable so rm can
  # remove it. An interrupted build also leaves no temporary binary behind.
  trap "chmod -R u+w '$tmp' 2>/dev/null; rm -rf '$tmp' '$bin.tmp.$$'" EXIT
  echo "kube-apiserver.sh: building $component $version (cold: 7-13 min, ~2.3 GB RAM)" >&2

  # go install refuses k8s.io/kubernetes (its go.mod has replace directives),
  # so build from a writable copy of the module zip instead.
  src=$(GOWORK=off GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@$version" |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [ -d "$src" ] || die "go mod download k8s.io/kubernetes@$version gave no module directory"
  cp -R "$src" "$tmp/kubernetes"
  chmod -R u+w "$tmp/kubernetes"
  cd "$tmp/kubernetes"
  # The zip has no staging sources and no real vendor tree: build in module mode.
  rm -rf go.work go.work.sum vendor

  # Every k8s.io/X => ./staging/src/k8s.io/X replace points at sources the zip
  # lacks. Drop them all; pin the ones go.mod requires at v0.0.0 to the
  # published version. sample-cli-plugin and sample-controller appear only as
  # replaces and are not served by the proxy, so they must not be required.
  local staged required m edits=()
  staged=$(awk '{ sub(/^replace[ \t]+/, "") } $2 == "=>" && $3 ~ /^\.\/staging\// { print $1 }' go.mod)
  required=$(awk '{ sub(/^require[ \t]+/, "") } $1 ~ /^k8s\.io\// && $2 == "v0.0.0" && $3 != "=>" { print $1 }' go.mod)
  [ -n "$staged" ] || die "no staging replaces found in k8s.io/kubernetes@$version go.mod"
  for m in $staged; do
    edits+=("-dropreplace=$m")
    case $m in
    k8s.io/sample-cli-plugin | k8s.io/sample-controller) continue ;;
    esac
    if grep -qx "$m" <<<"$required"; then
      edits+=("-require=$m@$staging_version")
    fi
  done
  go mod edit "${edits[@]}"

  # --version and the /version endpoint report these instead of v0.0.0-master.
  local pkg=k8s.io/component-base/version minor=${version#v1.} ldflags
  minor=${minor%%.*}
  ldflags="-s -w -X $pkg.gitVersion=$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  ldflags="$ldflags -X $pkg.gitTreeState=clean -X k8s.io/client-go/pkg/version.gitVersion=$version"
  # Build into the cache folder and rename, so an interrupted build never
  # leaves a half-written binary under the final name.
  GOWORK=off GOFLAGS=-mod=mod CGO_ENABLED=0 \
    go build -trimpath -ldflags "$ldflags" -o "$bin.tmp.$$" "./cmd/$component"
  mv -f "$bin.tmp.$$" "$bin"
  cd / && built || die "built $bin but its --version is not Kubernetes $version"
  echo "$bin"
}

deps() {
  command -v etcd >/dev/null && return
  command -v apt-get >/dev/null ||
    die "etcd is missing and this is not a Debian-like system: install etcd 3.4 or newer with your package manager"
  [ "$(id -u)" -eq 0 ] ||
    die "etcd is missing; run as root: sudo apt-get update && sudo apt-get install -y etcd-server"
  echo "kube-apiserver.sh: installing etcd-server" >&2
  # apt-install.sh keeps the package from starting a system etcd.
  "$(dirname "$0")/apt-install.sh" etcd-server
  command -v etcd >/dev/null
}

# starttime PID prints field 22 of /proc/PID/stat: the process's start time in
# clock ticks since boot. A pid plus its start time names one process forever,
# even after the pid is reused.
starttime() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  # Field 2 (comm) is parenthesised and may hold spaces: count from the last ')'.
  stat=${stat##*) }
  # shellcheck disable=SC2086
  set -- $stat
  echo "${20}"
}

# spawn NAME CMD... starts CMD in the background with its output in
# DIR/NAME.log, and records "PID STARTTIME" in DIR/NAME.pid.
spawn() {
  local name=$1 pid st
  shift
  nohup "$@" >"$dir/$name.log" 2>&1 </dev/null &
  pid=$!
  st=$(starttime "$pid") || die "$name exited at once; see $dir/$name.log"
  echo "$pid $st" >"$dir/$name.pid"
}

# ours NAME prints the pid recorded for NAME when that very process still runs.
ours() {
  local pid st
  [ -s "$dir/$1.pid" ] || return 1
  read -r pid st <"$dir/$1.pid"
  [[ $pid =~ ^[0-9]+$ ]] && [ "$(starttime "$pid")" = "$st" ] && echo "$pid"
}

stop_one() { # stop_one NAME
  local pid
  if pid=$(ours "$1"); then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 200); do [ "$(starttime "$pid")" = "" ] && break; sleep 0.05; done
    # Re-check identity before the SIGKILL: the pid may have been reused.
    if pid=$(ours "$1"); then kill -KILL "$pid" 2>/dev/null || true; fi
  fi
  rm -f "$dir/$1.pid"
}

# write_kubeconfig USER TOKEN SERVER writes DIR/USER.kubeconfig, readable by
# its owner only: it holds the user's bearer token.
write_kubeconfig() {
  (
    umask 077
    cat >"$dir/$1.kubeconfig.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: kubetest
  cluster:
    server: $3
    insecure-skip-tls-verify: true
users:
- name: $1
  user:
    token: $2
contexts:
- name: kubetest
  context: {cluster: kubetest, user: $1}
current-context: kubetest
EOF
  )
  mv -f "$dir/$1.kubeconfig.tmp" "$dir/$1.kubeconfig"
}

# kubeconfig USER: a kubeconfig for a static user of the cluster in DIR, with
# the server of the admin's.
kubeconfig() {
  local user=$1 token server
  [ -f "$dir/tokens.csv" ] && [ -f "$dir/admin.kubeconfig" ] ||
    die "no cluster in $dir: run hack/kube-apiserver.sh start $dir first"
  token=$(awk -F, -v u="$user" '$2 == u { print $1 }' "$dir/tokens.csv")
  [ -n "$token" ] || die "no user \"$user\" in $dir/tokens.csv; it has: $(cut -d, -f2 "$dir/tokens.csv" | paste -sd' ' -)"
  server=$(sed -n 's/^ *server: //p' "$dir/admin.kubeconfig")
  write_kubeconfig "$user" "$token" "$server"
  echo "$dir/$user.kubeconfig"
}

start() {
  command -v etcd >/dev/null || die "etcd not found: run hack/kube-apiserver.sh deps"
  built || die "kube-apiserver $version not built: run hack/kube-apiserver.sh build"
  command -v openssl >/dev/null || die "openssl not found: it makes the service-account key"
  local etcd_port=${ETCD_PORT:-2379} port=${KUBE_APISERVER_PORT:-6443} token
  local peer_port=${ETCD_PEER_PORT:-$((etcd_port + 1))}
  if ! ours etcd >/dev/null; then
    spawn etcd etcd --name=kubetest --data-dir="$dir/etcd" \
      --listen-client-urls="http://127.0.0.1:$etcd_port" --advertise-client-urls="http://127.0.0.1:$etcd_port" \
      --listen-peer-urls="http://127.0.0.1:$peer_port" \
      --initial-advertise-peer-urls="http://127.0.0.1:$peer_port" \
      --initial-cluster="kubetest=http://127.0.0.1:$peer_port" \
      --unsafe-no-fsync
  fi
  # An advertise address keeps kube-apiserver from needing a default route;
  # the endpoint reconcilers refuse a loopback one, so there is none.
  if ! ours kube-apiserver >/dev/null; then
    [ -f "$dir/sa.key" ] || openssl genrsa -out "$dir/sa.key" 2048 2>/dev/null
    if [ ! -f "$dir/tokens.csv" ]; then
      # token,user,uid,"groups": the static users the tests use.
      {
        echo "$(openssl rand -hex 16),admin,admin,\"system:masters\""
        echo "$(openssl rand -hex 16),ovsgate,ovsgate"
        echo "$(openssl rand -hex 16),nobody,nobody"
      } >"$dir/tokens.csv"
    fi
    spawn kube-apiserver "$bin" --etcd-servers="http://127.0.0.1:$etcd_port" \
      --bind-address=127.0.0.1 --secure-port="$port" --cert-dir="$dir/certs" \
      --advertise-address=127.0.0.1 --endpoint-reconciler-type=none \
      --service-account-issuer=https://kubernetes.default.svc \
      --service-account-key-file="$dir/sa.key" --service-account-signing-key-file="$dir/sa.key" \
      --token-auth-file="$dir/tokens.csv" --authorization-mode=RBAC \
      --service-cluster-ip-range=10.96.0.0/16 --disable-admission-plugins=ServiceAccount
  fi
  token=$(awk -F, '$2 == "admin" { print $1 }' "$dir/tokens.csv")
  write_kubeconfig admin "$token" "https://127.0.0.1:$port"
  for _ in $(seq 600); do
    if [ "$(curl -ks -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" "https://127.0.0.1:$port/readyz")" = 200 ]; then
      echo "kube-apiserver $version ready at https://127.0.0.1:$port (etcd 127.0.0.1:$etcd_port)"
      echo "  kubeconfig: $dir/admin.kubeconfig   tokens: $dir/tokens.csv   logs: $dir/*.log"
      echo "  stop:       hack/kube-apiserver.sh stop $dir"
      return
    fi
    ours kube-apiserver >/dev/null || die "kube-apiserver exited; see $dir/kube-apiserver.log"
    sleep 0.1
  done
  die "kube-apiserver not ready after 60s; see $dir/kube-apiserver.log"
}

case ${1:-} in
build)
  pick "${2:-}"
  build
  ;;
path)
  pick "${2:-}"
  built || die "$component $version not built: run hack/kube-apiserver.sh build${2:+ $2} (or make test)"
  echo "$bin"
  ;;
deps) deps ;;
kubeconfig)
  [ $# -eq 3 ] || die "usage: $0 kubeconfig DIR USER"
  [ -d "$2" ] || die "no cluster in $2: run hack/kube-apiserver.sh start $2 first"
  dir=$(cd "$2" && pwd)
  kubeconfig "$3"
  ;;
start | stop)
  [ $# -eq 2 ] || die "usage: $0 $1 DIR"
  mkdir -p "$2"
  dir=$(cd "$2" && pwd)
  if [ "$1" = start ]; then
    start
  else
    # kube-apiserver first: on SIGTERM it removes its endpoint from etcd, and
    # with etcd already gone it hangs for minutes.
    stop_one kube-apiserver
    stop_one etcd
    echo "kube-apiserver and etcd in $dir stopped"
  fi
  ;;
*)
  echo "usage: $0 build [COMPONENT]|path [COMPONENT]|deps|start DIR|kubeconfig DIR USER|stop DIR" >&2
  exit 2
  ;;
esac
