#!/bin/bash
# keyvirt-vm-pod: PID 1 of a launcher pod whose launcher runs outside the pod (ADRs 0130,
# 0131). The pod holds QEMU and this script; the launcher starts, follows and ends QEMU
# through the pod's state directory:
#   pod.ctl         a FIFO this script creates and reads, one command per line:
#                     start      run the command line in qemu.argv (once)
#                     kill       SIGKILL to QEMU
#                     exit N     the pod's exit code once QEMU has ended, or at once
#                                when QEMU was never started (0-255)
#   qemu.argv       QEMU's command line, NUL-separated, the binary first (the launcher's)
#   fence.deadline  /proc/uptime in centiseconds after which QEMU is killed, unless
#                   renewed (the launcher's; absent: no fence)
#   qemu.pid        QEMU's pid in the pod (this script's)
#   qemu.stderr     the last lines QEMU wrote to stderr, once it has ended (this script's)
#   qemu.exit       "status N" once QEMU has ended, as bash's wait reports it: 128+S
#                   when signal S ended it; "fenced" is added when the deadline did
#   stop.requested  written on SIGTERM: the launcher then shuts the guest down; once
#                   KEYVIRT_GRACE_SECONDS have passed this script kills QEMU itself
# A tick of the loop is one `read -t 1` on the FIFO and one read of /proc/uptime: no
# process is forked. A watcher subshell waits for QEMU and reports its pid and exit on
# the FIFO; another keeps the tail of QEMU's stderr.
# Killing this script (PID 1 of the pod's PID namespace) ends QEMU with it.
set -u
state=${KEYVIRT_STATE_DIR:?KEYVIRT_STATE_DIR must name the pod state directory}
grace=${KEYVIRT_GRACE_SECONDS:-180}
[[ $grace =~ ^[0-9]{1,5}$ ]] || { echo "keyvirt-vm-pod: KEYVIRT_GRACE_SECONDS must be a whole number of seconds, not '$grace'" >&2; exit 2; }
# How long the pod waits for the launcher's exit code once QEMU has ended.
exit_wait=${KEYVIRT_EXIT_WAIT_SECONDS:-30}
[[ $exit_wait =~ ^[0-9]{1,5}$ ]] || { echo "keyvirt-vm-pod: KEYVIRT_EXIT_WAIT_SECONDS must be a whole number of seconds" >&2; exit 2; }
ctl=$state/pod.ctl
umask 077
if [[ ! -p $ctl ]]; then
  rm -f -- "$ctl" && mkfifo -m 600 -- "$ctl" || { echo "keyvirt-vm-pod: cannot create $ctl" >&2; exit 70; }
fi
# Read and write: the FIFO never reaches end-of-file, whoever writes to it.
exec 3<>"$ctl" || exit 70

# The watcher's messages carry this nonce: a line written to the FIFO by anyone else
# cannot pass for QEMU's pid or exit.
nonce=$SRANDOM$SRANDOM
qemu_pid='' watcher='' started=0 ended=0 ended_status='' drained=0 exit_written=0 fenced=0 stop_at='' exit_code='' ended_at=''

log() { printf 'keyvirt-vm-pod: %s\n' "$*" >&2; }

# Centiseconds since boot, from /proc/uptime (monotonic; the launcher reads the same clock).
uptime_cs() {
  local up _rest
  read -r up _rest < /proc/uptime
  now_cs=$((10#${up/./}))
}

# SIGTERM (the kubelet's, or a pod deletion): handled by the loop. The trap only writes
# to the FIFO, as bash's `read -t` loses its timeout when a trap runs inside it.
on_term() {
  uptime_cs
  if ((started == 0)); then
    log 'termination requested before QEMU started'
    exit 0
  fi
  if [[ -z $stop_at ]]; then
    stop_at=$((now_cs + grace * 100))
    printf 'requested %d\n' "$now_cs" > "$state/stop.requested"
    log "termination requested; QEMU is killed after ${grace} s unless it ends first"
  fi
}
trap 'printf "term\\n" >&3' TERM INT

# The lines QEMU writes to stderr go to the container's log as they come and to
# qemu.stderr (the last 20 lines, of at most 500 characters each); "drained" at its end.
keep_tail() {
  local -a lines=()
  local line
  while IFS= read -r -n 4096 line || [[ -n $line ]]; do
    line=${line:0:500}
    printf 'qemu: %s\n' "$line" >&2
    lines+=("$line")
    ((${#lines[@]} > 20)) && lines=("${lines[@]:1}")
    printf '%s\n' "${lines[@]}" > "$state/qemu.stderr"
  done
  printf 'drained %s\n' "$nonce" >&3
}

start_qemu() {
  local -a argv
  if ((started)); then log 'start ignored: QEMU was started already'; return; fi
  if [[ ! -f $state/qemu.argv || -L $state/qemu.argv ]]; then log 'start ignored: no qemu.argv'; return; fi
  mapfile -d '' -t argv < "$state/qemu.argv"
  if ((${#argv[@]} == 0)); then log 'start ignored: qemu.argv is empty'; return; fi
  started=1
  # The watcher, QEMU's parent, reports its pid and its exit on the FIFO. QEMU gets
  # neither the FIFO nor stdin/stdout; its stderr goes to the tail keeper.
  (
    trap - TERM INT
    exec {err}> >(keep_tail)
    "${argv[@]}" 3>&- < /dev/null > /dev/null 2>&"$err" {err}>&- &
    pid=$!
    exec {err}>&- 2> /dev/null
    printf 'pid %s %d\n' "$nonce" "$pid" >&3
    wait "$pid"
    printf 'ended %s %d\n' "$nonce" "$?" >&3
  ) &
  watcher=$!
}

# QEMU has ended: qemu.exit is written once its stderr has drained (or a second later,
# should something QEMU started still hold the stream).
on_ended() {
  ended=1
  ended_status=$1
  uptime_cs
  ended_at=$now_cs
  wait "$watcher" 2> /dev/null
}

write_exit() {
  if ((fenced)); then
    printf 'status %d\nfenced\n' "$ended_status" > "$state/qemu.exit"
  else
    printf 'status %d\n' "$ended_status" > "$state/qemu.exit"
  fi
  exit_written=1
  log "QEMU ended with status $ended_status"
}

fence_check() {
  local deadline
  [[ -n $qemu_pid ]] && ((ended == 0 && fenced == 0)) || return 0
  if [[ -n $stop_at ]] && ((now_cs >= stop_at)); then
    log 'grace period over; killing QEMU'
    kill -KILL "$qemu_pid" 2> /dev/null
    stop_at=''
  fi
  [[ -f $state/fence.deadline && ! -L $state/fence.deadline ]] || return 0
  read -r deadline < "$state/fence.deadline" || return 0
  [[ $deadline =~ ^[0-9]{1,15}$ ]] || return 0
  if ((now_cs >= 10#$deadline)); then
    fenced=1
    log "fence deadline passed ($deadline, now $now_cs): killing QEMU"
    kill -KILL "$qemu_pid" 2> /dev/null
  fi
}

while :; do
  if read -r -t 1 -u 3 cmd arg arg2; then
    # From the watcher only: the nonce first.
    if [[ $cmd == pid || $cmd == ended || $cmd == drained ]]; then
      [[ $arg == "$nonce" ]] || cmd=forged
      arg=${arg2:-}
    fi
    case $cmd in
      start) start_qemu ;;
      term) on_term ;;
      kill) [[ -n $qemu_pid ]] && ((ended == 0)) && kill -KILL "$qemu_pid" 2> /dev/null ;;
      exit) [[ $arg =~ ^[0-9]{1,3}$ ]] && ((10#$arg <= 255)) && exit_code=$((10#$arg)) ;;
      pid) [[ $arg =~ ^[0-9]{1,10}$ ]] && qemu_pid=$arg && printf '%d\n' "$qemu_pid" > "$state/qemu.pid" ;;
      ended) [[ $arg =~ ^[0-9]{1,3}$ ]] && ((ended == 0)) && on_ended "$arg" ;;
      drained) drained=1 ;;
      forged) log 'a watcher message without the nonce ignored' ;;
      *) ;;
    esac
  fi
  uptime_cs
  fence_check
  # The launcher gave up before starting QEMU.
  ((started == 0)) && [[ -n $exit_code ]] && exit "$exit_code"
  if ((ended && !exit_written)) && ((drained || now_cs - ended_at >= 100)); then write_exit; fi
  if ((exit_written)); then
    [[ -n $exit_code ]] && exit "$exit_code"
    if ((now_cs - ended_at >= exit_wait * 100)); then
      log "no exit code from the launcher within ${exit_wait} s"
      exit 70
    fi
  fi
done
