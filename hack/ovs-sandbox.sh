#!/usr/bin/env bash
# Start or stop a throwaway Open vSwitch (ovsdb-server + ovs-vswitchd with the
# dummy datapath) whose whole state lives in one folder. It never touches the
# system OVS under /var/run/openvswitch.
#
#   hack/ovs-sandbox.sh start [DIR] [BRIDGE...]   start (or reuse) a sandbox, add netdev bridges
#   hack/ovs-sandbox.sh stop  [DIR]               stop the daemons this script started in DIR
#   hack/ovs-sandbox.sh env   [DIR]               print the environment for ovs-vsctl/ovs-appctl
#
# DIR defaults to ./_sandbox. Running start twice reuses the running daemons.
set -o errexit -o nounset -o pipefail

cmd=${1:-}
dir=${2:-_sandbox}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
shift $(( $# >= 2 ? 2 : $# ))

if [ "$dir" = /var/run/openvswitch ] || [ "$dir" = /run/openvswitch ]; then
  echo "ovs-sandbox: refusing to use the system OVS folder $dir" >&2
  exit 2
fi

export OVS_RUNDIR=$dir OVS_DBDIR=$dir OVS_LOGDIR=$dir OVS_SYSCONFDIR=$dir OVS_PKGDATADIR=/usr/share/openvswitch
db_sock=$dir/db.sock
vsctl() { ovs-vsctl --db="unix:$db_sock" --timeout=10 "$@"; }

alive() { # alive PIDFILE
  [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

stop_one() { # stop_one NAME
  local pidfile=$dir/$1.pid pid
  alive "$pidfile" || { rm -f "$pidfile"; return 0; }
  pid=$(cat "$pidfile")
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$pidfile"
}

case $cmd in
start)
  command -v ovsdb-server >/dev/null || { echo "ovs-sandbox: ovsdb-server not found; run hack/install-ovs.sh" >&2; exit 1; }
  if ! alive "$dir/ovsdb-server.pid"; then
    [ -f "$dir/conf.db" ] || ovsdb-tool create "$dir/conf.db" /usr/share/openvswitch/vswitch.ovsschema
    ovsdb-server "$dir/conf.db" --remote="punix:$db_sock" --unixctl="$dir/ovsdb-server.ctl" \
      --pidfile="$dir/ovsdb-server.pid" --log-file="$dir/ovsdb-server.log" -vconsole:off --detach --no-chdir
    vsctl --no-wait init
  fi
  if ! alive "$dir/ovs-vswitchd.pid"; then
    ovs-vswitchd "unix:$db_sock" --enable-dummy=override --disable-system \
      --pidfile="$dir/ovs-vswitchd.pid" --log-file="$dir/ovs-vswitchd.log" -vconsole:off --detach --no-chdir
  fi
  for br in "$@"; do
    vsctl --may-exist add-br "$br" -- set bridge "$br" datapath_type=netdev
  done
  echo "OVS sandbox in $dir"
  echo "  ovsdb:       unix:$db_sock"
  echo "  ovs-rundir:  $dir"
  echo "  vswitchd:    pid $(cat "$dir/ovs-vswitchd.pid")"
  echo "  bridges:     $(vsctl list-br | tr '\n' ' ')"
  echo "  shell:       eval \"\$(hack/ovs-sandbox.sh env $dir)\""
  ;;
stop)
  stop_one ovs-vswitchd
  stop_one ovsdb-server
  echo "OVS sandbox in $dir stopped"
  ;;
env)
  echo "export OVS_RUNDIR=$dir OVS_DBDIR=$dir OVS_LOGDIR=$dir OVS_SYSCONFDIR=$dir"
  ;;
*)
  echo "usage: $0 start|stop|env [DIR] [BRIDGE...]" >&2
  exit 2
  ;;
esac
