#!/usr/bin/env bash
# make run: start a sandbox OVS with br-int under _sandbox/ and run
# `ovsgate serve` against it in the foreground. Ctrl-C stops ovsgate, then
# the part of the sandbox this run started (a sandbox that was already
# running stays running).
#
# Environment: SANDBOX (default _sandbox), RUN_DIR (_run), PROBE_ADDR
# (127.0.0.1:9476), METRICS_ADDR (127.0.0.1:9477; 0 disables metrics),
# OVSGATE (bin/ovsgate). Relative paths are from the repository root.
set -o errexit -o nounset -o pipefail
cd "$(dirname "$0")/.."

sandbox=${SANDBOX:-_sandbox}
rundir=${RUN_DIR:-_run}
probe_addr=${PROBE_ADDR:-127.0.0.1:9476}
metrics_addr=${METRICS_ADDR:-127.0.0.1:9477}
bin=${OVSGATE:-bin/ovsgate}

die() { echo "run.sh: $*" >&2; exit 1; }

# Refuse before touching anything. One run per sandbox: a second one would
# fail to bind and then stop the first one's sandbox on its way out. The
# lock is held on fd 9 for the life of this script; the daemons and ovsgate
# must not inherit it (9>&-), or they would hold it after we are gone.
mkdir -p "$sandbox"
exec 9>>"$sandbox/.run.lock"
flock -n 9 || die "another make run (hack/run.sh) is running with the sandbox $sandbox; stop it first (Ctrl-C in its terminal)"

# port_in_use HOST:PORT: something accepts connections there.
port_in_use() {
  local host=${1%:*} port=${1##*:}
  host=${host#[} host=${host%]}
  case $host in "" | 0.0.0.0 | ::) host=127.0.0.1 ;; esac
  (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null
}
port_in_use "$probe_addr" && die "the probe address $probe_addr is in use (another ovsgate serve?); stop it or set PROBE_ADDR"
if [ "$metrics_addr" != 0 ] && port_in_use "$metrics_addr"; then
  die "the metrics address $metrics_addr is in use (another ovsgate serve?); stop it or set METRICS_ADDR"
fi
[ -x "$bin" ] || die "$bin is not an executable; run make build (or set OVSGATE)"

# What runs already is not ours to stop.
before=$(hack/ovs-sandbox.sh status "$sandbox" 9>&- || true)
own_ovsdb=1 own_vswitchd=1
grep -q '^ovsdb-server: running' <<<"$before" && own_ovsdb=''
grep -q '^ovs-vswitchd: running' <<<"$before" && own_vswitchd=''
if [ -n "$own_ovsdb" ] && [ -n "$own_vswitchd" ]; then
  what_stops="the sandbox in $sandbox"
elif [ -n "$own_ovsdb$own_vswitchd" ]; then
  what_stops="the $([ -n "$own_ovsdb" ] && echo ovsdb-server || echo ovs-vswitchd) this run started in $sandbox (the other daemon ran before and stays)"
else
  what_stops=''
  echo "run.sh: the sandbox in $sandbox was already running; it stays running when this stops"
fi

serve_pid='' serve_done='' interrupted='' signals=0 rc=0
# shellcheck disable=SC2317 # cleanup and on_signal run from traps
cleanup() {
  if [ -n "$serve_pid" ] && [ -z "$serve_done" ]; then # our own child, not yet reaped
    kill -TERM "$serve_pid" 2>/dev/null || true
    wait "$serve_pid" 2>/dev/null || true
  fi
  if [ -n "$own_ovsdb" ] && [ -n "$own_vswitchd" ]; then
    hack/ovs-sandbox.sh stop "$sandbox" 9>&- >/dev/null || true
  elif [ -n "$own_vswitchd" ]; then
    hack/ovs-sandbox.sh stop-vswitchd "$sandbox" 9>&- >/dev/null || true
  elif [ -n "$own_ovsdb" ]; then
    hack/ovs-sandbox.sh stop-ovsdb "$sandbox" 9>&- >/dev/null || true
  else
    echo "run.sh: leaving the sandbox in $sandbox running (it ran before this make run)" >&2
  fi
}
# shellcheck disable=SC2317
on_signal() {
  signals=$(( signals + 1 ))
  if [ -n "$interrupted" ]; then return; fi
  interrupted=1
  if [ -z "$serve_pid" ]; then
    echo "run.sh: stopping ${what_stops:-nothing: the sandbox stays}" >&2
    exit 130
  fi
  echo "run.sh: stopping ovsgate${what_stops:+, then $what_stops}" >&2
  kill -TERM "$serve_pid" 2>/dev/null || true
}
trap cleanup EXIT
trap on_signal INT TERM

hack/ovs-sandbox.sh start "$sandbox" br-int 9>&-
mkdir -p "$rundir"
sandbox_abs=$(cd "$sandbox" && pwd)
status_file=$(cd "$rundir" && pwd)/status.json

cat <<MSG

ovsgate serve is starting against the sandbox. Look at:
  readiness:    curl -s http://$probe_addr/readyz?verbose
  liveness:     curl -s http://$probe_addr/livez
  status JSON:  curl -s http://$probe_addr/status   (also in $status_file)
  metrics:      curl -s http://$metrics_addr/metrics | grep ^ovsgate_
  one-shot:     $bin check --ovsdb unix:$sandbox_abs/db.sock --ovs-rundir $sandbox_abs
  break it:     hack/ovs-sandbox.sh kill-vswitchd $sandbox   (then start-vswitchd; or: status, restart-ovsdb)
                hack/ovs-sandbox.sh pause-vswitchd $sandbox  (hung until resume-vswitchd)
                eval "\$(hack/ovs-sandbox.sh env $sandbox)"; ovs-vsctl del-br br-int
Press Ctrl-C to stop ovsgate${what_stops:+ and $what_stops}.

MSG
"$bin" serve \
  --ovsdb "unix:$sandbox_abs/db.sock" \
  --ovs-rundir "$sandbox_abs" \
  --bridge br-int \
  --status-file "$status_file" \
  --health-probe-bind-address "$probe_addr" \
  --metrics-bind-address "$metrics_addr" 9>&- &
serve_pid=$!
# A trap interrupts wait with a status above 128; wait again for ovsgate's own.
while :; do
  signals_before=$signals st=0
  wait "$serve_pid" || st=$?
  if [ "$signals" -eq "$signals_before" ] || [ "$st" -lt 128 ]; then break; fi
done
serve_done=1
rc=$st
if [ "$rc" -ne 0 ] && [ -z "$interrupted" ]; then
  echo "run.sh: ovsgate serve exited with status $rc; stopping ${what_stops:-nothing else}" >&2
fi
exit "$rc"
