#!/usr/bin/env bash
# make run: start a sandbox OVS with br-int under _sandbox/ and run
# `ovsgate serve` against it in the foreground. Ctrl-C stops ovsgate and the
# sandbox.
set -o errexit -o nounset -o pipefail
cd "$(dirname "$0")/.."

sandbox=${SANDBOX:-_sandbox}
rundir=${RUN_DIR:-_run}
probe_addr=${PROBE_ADDR:-127.0.0.1:9476}
metrics_addr=${METRICS_ADDR:-127.0.0.1:9477}
bin=${OVSGATE:-bin/ovsgate}

cleanup() { hack/ovs-sandbox.sh stop "$sandbox" >/dev/null || true; }
trap cleanup EXIT
hack/ovs-sandbox.sh start "$sandbox" br-int
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
  break it:     eval "\$(hack/ovs-sandbox.sh env $sandbox)"; ovs-vsctl del-br br-int   (or kill the ovs-vswitchd pid above)
Press Ctrl-C to stop ovsgate and the sandbox.

MSG
"$bin" serve \
  --ovsdb "unix:$sandbox_abs/db.sock" \
  --ovs-rundir "$sandbox_abs" \
  --bridge br-int \
  --status-file "$status_file" \
  --health-probe-bind-address "$probe_addr" \
  --metrics-bind-address "$metrics_addr" &
pid=$!
trap 'kill -TERM $pid 2>/dev/null || true' INT TERM
wait $pid || true
wait $pid 2>/dev/null || true
