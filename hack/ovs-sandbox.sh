#!/usr/bin/env bash
# Start and stop a throwaway Open vSwitch (ovsdb-server + ovs-vswitchd with the
# dummy datapath, netdev bridges) whose whole state lives in one folder. It
# never touches the system OVS under /var/run/openvswitch.
#
# usage: hack/ovs-sandbox.sh VERB [DIR] ...     (DIR defaults to ./_sandbox)
#
#   start [--pidns] [DIR] [BRIDGE...]  start both daemons (running ones are reused), add netdev bridges
#   stop [DIR]                         stop ovs-vswitchd, then ovsdb-server
#   start-vswitchd [--pidns] [DIR]     start ovs-vswitchd unless it runs; returns once it applied the database
#   stop-vswitchd [DIR]                SIGTERM ovs-vswitchd, SIGKILL if it is not gone within 10 s
#   kill-vswitchd [DIR]                SIGKILL ovs-vswitchd and wait until it is gone; its pidfile and
#                                      socket stay behind, as after a crash
#   restart-vswitchd [--pidns] [DIR]   stop-vswitchd, then start-vswitchd
#   pause-vswitchd [DIR]               SIGSTOP ovs-vswitchd: it stays alive and answers nothing, as a hung one
#   resume-vswitchd [DIR]              SIGCONT ovs-vswitchd: it answers again, the same instance
#   start-ovsdb [DIR]                  start ovsdb-server unless it runs
#   stop-ovsdb [DIR]                   stop ovsdb-server only (ovs-vswitchd keeps running and reconnects later)
#   restart-ovsdb [DIR]                stop-ovsdb, then start-ovsdb
#   status [DIR]                       one line per daemon; exit status 0 when both run, 3 otherwise
#   env [DIR]                          print the environment for ovs-vsctl and ovs-appctl
#
# --pidns runs ovs-vswitchd as it runs in a container: as pid 1 of its own pid
# namespace (unshare --pid --fork --mount-proc), so its pidfile says 1 and its
# socket is DIR/ovs-vswitchd.1.ctl. DIR remembers the mode: start,
# start-vswitchd and restart-vswitchd keep it until `stop` forgets it.
#
# A pid read from a pidfile is never signalled: in another pid namespace it
# names some other process of ours, maybe init. Each daemon is started in its
# own session (setsid) and recorded in DIR/.NAME.owner as "PID STARTTIME MODE"
# (STARTTIME is field 22 of /proc/PID/stat). Only a process that still has that
# start time, is not a zombie and leads its own process group is signalled,
# always as a whole process group (with --pidns: unshare and ovs-vswitchd).
# Anything else is refused on stderr and its ownership file removed.
# pause-vswitchd and resume-vswitchd signal that group too: with --pidns,
# unshare and the ovs-vswitchd that is pid 1 of its namespace (SIGSTOP from
# outside the namespace reaches it although it has no handler for it).
set -o errexit -o nounset -o pipefail

prog=hack/ovs-sandbox.sh
usage() { sed -n '/^# usage:/,/forgets it\.$/s/^# \{0,1\}//p' "$0" >&2; }
die() { echo "ovs-sandbox: $*" >&2; exit 1; }

cmd=${1:-}
[ $# -gt 0 ] && shift
pidns=''
if [ "${1:-}" = --pidns ]; then
  case $cmd in start | start-vswitchd | restart-vswitchd) pidns=1; shift ;; esac
fi
case ${1:-} in -*) echo "ovs-sandbox: unknown option ${1} for ${cmd:-no verb}" >&2; usage; exit 2 ;; esac
dir=${1:-_sandbox}
[ $# -gt 0 ] && shift
case $cmd in
start) ;;
stop | start-vswitchd | stop-vswitchd | kill-vswitchd | restart-vswitchd | pause-vswitchd | resume-vswitchd | start-ovsdb | stop-ovsdb | restart-ovsdb | status | env)
  [ $# -eq 0 ] || { echo "ovs-sandbox: $cmd takes no arguments after DIR, got: $*" >&2; usage; exit 2; } ;;
*)
  [ -n "$cmd" ] && echo "ovs-sandbox: unknown verb '$cmd'" >&2
  usage
  exit 2
  ;;
esac
bridges=("$@")

# Canonical (symlinks resolved, /var/run is /run), before anything is created.
dir=$(realpath -m -- "$dir")
case $dir in /var/run/openvswitch | /run/openvswitch) die "refusing to use the system OVS folder $dir" ;; esac
# A unix socket path must fit in sun_path (107 bytes); ovs-vswitchd's is the longest.
vswitchd_ctl_max=/ovs-vswitchd.4194304.ctl
if [ $(( ${#dir} + ${#vswitchd_ctl_max} )) -gt 107 ]; then
  die "$dir is too long for unix socket paths (at most 82 bytes); use a shorter folder"
fi

case $cmd in start*) mkdir -p "$dir" ;; esac

export OVS_RUNDIR=$dir OVS_DBDIR=$dir OVS_LOGDIR=$dir OVS_SYSCONFDIR=$dir OVS_PKGDATADIR=/usr/share/openvswitch
db_sock=$dir/db.sock
pidns_file=$dir/.ovs-vswitchd.pidns
vsctl() { ovs-vsctl --db="unix:$db_sock" "$@"; }

if [ "$cmd" = env ]; then
  echo "export OVS_RUNDIR=$dir OVS_DBDIR=$dir OVS_LOGDIR=$dir OVS_SYSCONFDIR=$dir"
  exit 0
fi
if [ ! -d "$dir" ]; then # nothing was ever started here
  case $cmd in
  status) echo "ovsdb-server: stopped"; echo "ovs-vswitchd: stopped"; exit 3 ;;
  kill-vswitchd | pause-vswitchd | resume-vswitchd) die "ovs-vswitchd: not running in $dir" ;;
  *) echo "OVS sandbox in $dir: nothing running"; exit 0 ;;
  esac
fi

# One verb at a time per DIR. The daemons must not inherit the lock (fd 8),
# or they would hold it for ever.
exec 8>>"$dir/.lock"
flock -w 60 8 || die "another $prog holds $dir/.lock for more than 60 s"

# now_us: microseconds of the wall clock, without a subshell.
now_us() { now=${EPOCHREALTIME/[.,]/}; }

# read_stat PID: sets st_state, st_pgrp, st_flags and st_start from
# /proc/PID/stat; fails when there is no such process.
read_stat() {
  local s
  { read -r s <"/proc/$1/stat"; } 2>/dev/null || return 1
  local -a f
  # The command name (field 2) may hold spaces and parentheses: skip past its last ')'.
  read -r -a f <<<"${s##*) }"
  [ ${#f[@]} -ge 20 ] || return 1
  st_state=${f[0]} st_pgrp=${f[2]} st_flags=${f[6]} st_start=${f[19]}
}

# sigkill_pending PID: a SIGKILL is queued but not yet acted on.
sigkill_pending() {
  local k v
  {
    while read -r k v; do
      case $k in SigPnd: | ShdPnd:) (( 0x$v & 0x100 )) && return 0 ;; esac
    done <"/proc/$1/status"
  } 2>/dev/null
  return 1
}

# classify NAME: reads DIR/.NAME.owner into own_pid, own_start and own_mode and
# sets state to what the recorded process is now:
#   none     no ownership file
#   running  ours: same start time, not a zombie, leader of its own process group
#   dying    ours, but killed or exiting (a new one must not be started beside it)
#   gone     exited (missing or a zombie)
#   foreign  the pid names another process, or the file is not ours: never signal it
classify() {
  local file=$dir/.$1.owner
  own_pid='' own_start='' own_mode='' why=''
  if [ ! -f "$file" ]; then state=none; return; fi
  read -r own_pid own_start own_mode <"$file" || true
  if ! [[ $own_pid =~ ^[0-9]+$ && $own_start =~ ^[0-9]+$ ]]; then
    state=foreign why="it holds no pid and start time"
  elif [ "$own_pid" -le 1 ]; then # kill -- -1 would signal every process
    state=foreign why="it names pid $own_pid, which this script never starts"
  elif ! read_stat "$own_pid"; then
    state=gone
  elif [ "$st_start" != "$own_start" ]; then
    state=foreign why="pid $own_pid is now another process (start time $st_start, recorded $own_start)"
  elif [[ $st_state == [ZX] ]]; then
    state=gone
  elif [ "$st_pgrp" != "$own_pid" ]; then
    state=foreign why="pid $own_pid leads no process group of its own (it is in group $st_pgrp)"
  elif (( st_flags & 0x4 )) || sigkill_pending "$own_pid"; then # 0x4: PF_EXITING
    state=dying
  else
    state=running
  fi
}

# refuse NAME: the ownership file does not name a process of ours.
refuse() {
  echo "ovs-sandbox: $1: refusing to signal anything: $dir/.$1.owner is stale, $why; removed it" >&2
  rm -f "$dir/.$1.owner"
}

# group_alive PGID: a process of the group still runs (zombies do not count).
group_alive() {
  local p s
  local -a f
  for p in /proc/[0-9]*/stat; do
    { read -r s <"$p"; } 2>/dev/null || continue
    # shellcheck disable=SC2206 # numbers and a state letter: split, nothing to glob
    f=(${s##*) })
    [ "${f[2]:-}" = "$1" ] && [[ ${f[0]} != [ZX] ]] && return 0
  done
  return 1
}

# leader_alive PID START: the group leader still runs (cheap, unlike group_alive).
leader_alive() {
  read_stat "$1" && [ "$st_start" = "$2" ] && [[ $st_state != [ZX] ]]
}

# wait_gone PGID START SECONDS: waits until no process of the group runs.
# The leader is watched first: scanning every process is costly, and would
# compete for the CPU with what the caller measures.
wait_gone() {
  local now deadline
  now_us; deadline=$(( now + $3 * 1000000 ))
  while leader_alive "$1" "$2" || group_alive "$1"; do
    now_us; [ "$now" -lt "$deadline" ] || return 1
    sleep 0.01
  done
}

# signal_group NAME SIGNAL: signals the recorded process group, after
# checking again that it is ours.
signal_group() {
  classify "$1"
  case $state in
  running | dying) kill "-$2" -- "-$own_pid" 2>/dev/null || true ;;
  foreign) refuse "$1"; return 1 ;;
  esac
}

# stop_one NAME: SIGTERM, then SIGKILL if the group is not gone within 10 s.
stop_one() {
  classify "$1"
  case $state in
  none) echo "$1: not running"; return 0 ;;
  gone) rm -f "$dir/.$1.owner"; echo "$1: not running (pid $own_pid had exited)"; return 0 ;;
  foreign) refuse "$1"; return 1 ;;
  esac
  local pid=$own_pid start=$own_start
  signal_group "$1" TERM || return 1
  # A paused daemon acts on SIGTERM only once it runs again.
  signal_group "$1" CONT || return 1
  if ! wait_gone "$pid" "$start" 10; then
    echo "ovs-sandbox: $1 (pid $pid) still runs 10 s after SIGTERM; sending SIGKILL" >&2
    signal_group "$1" KILL || return 1
    wait_gone "$pid" "$start" 10 || die "$1: process group $pid still runs 10 s after SIGKILL"
  fi
  rm -f "$dir/.$1.owner"
  echo "$1: stopped (pid $pid)"
}

# kill_vswitchd: SIGKILL, as a crash; the pidfile and socket stay behind.
kill_vswitchd() {
  classify ovs-vswitchd
  case $state in
  none | gone) rm -f "$dir/.ovs-vswitchd.owner"; die "ovs-vswitchd: not running in $dir (nothing to kill)" ;;
  foreign) refuse ovs-vswitchd; exit 1 ;;
  esac
  local pid=$own_pid start=$own_start
  signal_group ovs-vswitchd KILL || exit 1
  echo "ovs-vswitchd: SIGKILL sent to process group $pid"
  wait_gone "$pid" "$start" 10 || die "ovs-vswitchd: process group $pid still runs 10 s after SIGKILL"
  rm -f "$dir/.ovs-vswitchd.owner"
  echo "ovs-vswitchd: pid $pid gone (pidfile and socket left behind)"
}

# group_states PGID: counts the live processes of the group that are stopped
# (state T) in n_stopped, the others in n_running. group_stopped: all are
# stopped; group_running: none is.
group_states() {
  local p s
  local -a f
  n_stopped=0 n_running=0
  for p in /proc/[0-9]*/stat; do
    { read -r s <"$p"; } 2>/dev/null || continue
    # shellcheck disable=SC2206 # numbers and a state letter: split, nothing to glob
    f=(${s##*) })
    [ "${f[2]:-}" = "$1" ] || continue
    case ${f[0]} in
    Z | X) ;;
    T) n_stopped=$(( n_stopped + 1 )) ;;
    *) n_running=$(( n_running + 1 )) ;;
    esac
  done
}
group_stopped() { group_states "$1"; [ "$n_stopped" -gt 0 ] && [ "$n_running" -eq 0 ]; }
group_running() { group_states "$1"; [ "$n_stopped" -eq 0 ]; }

# pause_vswitchd STOP|CONT: SIGSTOP or SIGCONT to the ovs-vswitchd this script
# started (its whole process group), then waits until every process of the
# group is stopped, or none is.
pause_vswitchd() {
  local sig=$1 until=group_stopped done=paused verb=pause-vswitchd already='already paused' now deadline
  [ "$sig" = CONT ] && until=group_running done=resumed verb=resume-vswitchd already='not paused'
  classify ovs-vswitchd
  case $state in
  none | gone) rm -f "$dir/.ovs-vswitchd.owner"; die "ovs-vswitchd: not running in $dir (nothing to $verb)" ;;
  foreign) refuse ovs-vswitchd; exit 1 ;;
  dying) die "ovs-vswitchd: pid $own_pid is exiting" ;;
  esac
  local pid=$own_pid
  if "$until" "$pid"; then
    echo "ovs-vswitchd: $already (process group $pid)"
    return
  fi
  signal_group ovs-vswitchd "$sig" || exit 1
  now_us; deadline=$(( now + 10 * 1000000 ))
  until "$until" "$pid"; do
    now_us; [ "$now" -lt "$deadline" ] || die "ovs-vswitchd: process group $pid not $done 10 s after SIG$sig"
    sleep 0.01
  done
  if [ "$sig" = STOP ]; then
    echo "ovs-vswitchd: paused (SIGSTOP to process group $pid); $prog resume-vswitchd $dir continues it"
  else
    echo "ovs-vswitchd: resumed (SIGCONT to process group $pid)"
  fi
}

# await_exit NAME: a daemon that is ours but dying must be gone before a new
# one starts: it still holds its pidfile lock and socket.
await_exit() {
  local pid=$own_pid
  wait_gone "$pid" "$own_start" 10 || die "$1: pid $pid was killed but still runs after 10 s"
  rm -f "$dir/.$1.owner"
}

# spawn NAME MODE COMMAND...: starts COMMAND in a new session, logging to
# DIR/NAME.log, and records it in DIR/.NAME.owner. Sets spawned and
# spawned_start.
spawn() {
  local name=$1 mode=$2 interrupted=''
  shift 2
  # A Ctrl-C between the start and the ownership file would leave a daemon
  # nobody may stop; a trap (not an ignored signal, which the daemon would
  # inherit) defers it. Background commands of a script ignore SIGINT anyway.
  trap 'interrupted=1' INT TERM
  setsid "$@" </dev/null >>"$dir/$name.log" 2>&1 8>&- &
  spawned=$! spawned_start=''
  if read_stat "$spawned"; then
    spawned_start=$st_start
    echo "$spawned $st_start $mode" >"$dir/.$name.owner.tmp"
    mv -f "$dir/.$name.owner.tmp" "$dir/.$name.owner"
  fi
  trap - INT TERM
  [ -z "$interrupted" ] || exit 130
  [ -f "$dir/.$name.owner" ] || die "$name exited at once; see $dir/$name.log"
}

# await NAME DESCRIPTION COMMAND...: waits up to 20 s for COMMAND to succeed
# while the spawned daemon runs; otherwise stops it and fails.
await() {
  local name=$1 what=$2 now deadline
  shift 2
  now_us; deadline=$(( now + 20 * 1000000 ))
  until "$@" >/dev/null 2>&1; do
    # Not classify: setsid may not have made it a group leader yet.
    if ! leader_alive "$spawned" "$spawned_start"; then
      echo "ovs-sandbox: $name exited while starting; last lines of $dir/$name.log:" >&2
      tail -n 5 "$dir/$name.log" >&2 || true
      rm -f "$dir/.$name.owner"
      exit 1
    fi
    now_us
    if [ "$now" -ge "$deadline" ]; then
      echo "ovs-sandbox: $name: no $what within 20 s; stopping it. Last lines of $dir/$name.log:" >&2
      tail -n 5 "$dir/$name.log" >&2 || true
      stop_one "$name" >/dev/null || true
      exit 1
    fi
    sleep 0.01
  done
}

pidfile_is() { [ "$(cat "$1" 2>/dev/null)" = "$2" ]; }

start_ovsdb() {
  classify ovsdb-server
  case $state in
  running) echo "ovsdb-server: already running, pid $own_pid"; return ;;
  dying) await_exit ovsdb-server ;;
  foreign) refuse ovsdb-server ;;
  esac
  command -v ovsdb-server >/dev/null || die "ovsdb-server not found; run hack/install-ovs.sh"
  [ -f "$dir/conf.db" ] || ovsdb-tool create "$dir/conf.db" /usr/share/openvswitch/vswitch.ovsschema
  spawn ovsdb-server host ovsdb-server "$dir/conf.db" --remote="punix:$db_sock" \
    --unixctl="$dir/ovsdb-server.ctl" --pidfile="$dir/ovsdb-server.pid" \
    --log-file="$dir/ovsdb-server.log" -vconsole:off --no-chdir
  await ovsdb-server "answer on $db_sock" vsctl --no-wait --timeout=2 init
  echo "ovsdb-server: started, pid $spawned"
}

start_vswitchd() {
  local mode=host ctl_pid
  [ -f "$pidns_file" ] && mode=pidns
  classify ovs-vswitchd
  case $state in
  running)
    if [ -n "$pidns" ] && [ "$own_mode" != pidns ]; then
      die "ovs-vswitchd (pid $own_pid) runs without --pidns; stop-vswitchd first"
    fi
    echo "ovs-vswitchd: already running, $(describe_vswitchd)"
    return ;;
  dying) await_exit ovs-vswitchd ;;
  foreign) refuse ovs-vswitchd ;;
  esac
  [ -z "$pidns" ] || { mode=pidns; : >"$pidns_file"; }
  classify ovsdb-server
  [ "$state" = running ] || die "ovsdb-server is not running in $dir; start-ovsdb first"
  # Return once it applied the database, as --detach does: its first
  # configuration sets cur_cfg to next_cfg, and bumping next_cfg before it
  # starts keeps the cur_cfg an earlier instance left below that.
  local next
  next=$(vsctl --no-wait --timeout=5 get Open_vSwitch . next_cfg)
  next=$(( next + 1 ))
  vsctl --no-wait --timeout=5 set Open_vSwitch . next_cfg="$next"
  local vswitchd=(ovs-vswitchd "unix:$db_sock" --enable-dummy=override --disable-system
    --pidfile="$dir/ovs-vswitchd.pid" --log-file="$dir/ovs-vswitchd.log" -vconsole:off --no-chdir)
  if [ "$mode" = pidns ]; then
    # --kill-child: ovs-vswitchd dies with unshare. unshare blocks SIGTERM
    # and waits; ovs-vswitchd, pid 1 of its namespace, gets SIGTERM from
    # here because it handles it, and SIGKILL always.
    spawn ovs-vswitchd pidns unshare --pid --fork --mount-proc --kill-child "${vswitchd[@]}"
    ctl_pid=1
  else
    spawn ovs-vswitchd host "${vswitchd[@]}"
    ctl_pid=$spawned
  fi
  # The socket file exists (bind) before ovs-vswitchd listens: ask it.
  await ovs-vswitchd "answer on $dir/ovs-vswitchd.$ctl_pid.ctl" \
    ovs-appctl --timeout=2 -t "$dir/ovs-vswitchd.$ctl_pid.ctl" version
  await ovs-vswitchd "pidfile naming $ctl_pid" pidfile_is "$dir/ovs-vswitchd.pid" "$ctl_pid"
  await ovs-vswitchd "configuration applied" vsctl --timeout=2 wait-until Open_vSwitch . "cur_cfg>=$next"
  classify ovs-vswitchd
  echo "ovs-vswitchd: started, $(describe_vswitchd)"
}

# describe_vswitchd: the spawned pid in our pid namespace and, where it
# differs, the pid its pidfile holds. After classify.
describe_vswitchd() {
  local in_file
  in_file=$(cat "$dir/ovs-vswitchd.pid" 2>/dev/null || echo none)
  local paused=''
  [ "${st_state:-}" = T ] && paused=', paused (resume-vswitchd continues it)'
  if [ "$own_mode" = pidns ]; then
    echo "pid $own_pid (own pid namespace; pidfile says $in_file)$paused"
  elif [ "$in_file" != "$own_pid" ]; then
    echo "pid $own_pid (pidfile says $in_file)$paused"
  else
    echo "pid $own_pid$paused"
  fi
}

status_of() { # status_of NAME: prints its line; fails when it does not run
  classify "$1"
  case $state in
  running | dying)
    local what="pid $own_pid" note=
    [ "$1" = ovs-vswitchd ] && what=$(describe_vswitchd)
    [ "$state" = dying ] && note=", dying"
    echo "$1: running, $what$note"
    [ "$state" = running ] ;;
  foreign) refuse "$1"; echo "$1: stopped"; return 1 ;;
  *) rm -f "$dir/.$1.owner"; echo "$1: stopped"; return 1 ;;
  esac
}

case $cmd in
start)
  start_ovsdb
  start_vswitchd
  for br in ${bridges[@]+"${bridges[@]}"}; do
    vsctl --timeout=20 --may-exist add-br "$br" -- set bridge "$br" datapath_type=netdev
  done
  classify ovs-vswitchd
  echo "OVS sandbox in $dir"
  echo "  ovsdb:       unix:$db_sock"
  echo "  ovs-rundir:  $dir"
  echo "  vswitchd:    $(describe_vswitchd)"
  echo "  bridges:     $(vsctl --no-wait --timeout=5 list-br | tr '\n' ' ')"
  echo "  shell:       eval \"\$($prog env $dir)\""
  ;;
stop)
  rc=0
  stop_one ovs-vswitchd || rc=1
  stop_one ovsdb-server || rc=1
  rm -f "$pidns_file"
  echo "OVS sandbox in $dir stopped"
  exit $rc
  ;;
start-vswitchd) start_vswitchd ;;
stop-vswitchd) stop_one ovs-vswitchd ;;
kill-vswitchd) kill_vswitchd ;;
restart-vswitchd) stop_one ovs-vswitchd && start_vswitchd ;;
pause-vswitchd) pause_vswitchd STOP ;;
resume-vswitchd) pause_vswitchd CONT ;;
start-ovsdb) start_ovsdb ;;
stop-ovsdb) stop_one ovsdb-server ;;
restart-ovsdb) stop_one ovsdb-server && start_ovsdb ;;
status)
  rc=0
  status_of ovsdb-server || rc=3
  status_of ovs-vswitchd || rc=3
  exit $rc
  ;;
esac
