#!/usr/bin/env bash
# down.sh [--dir DIR]: stop everything deploy/local/up.sh started for DIR
# and leave nothing running. Each process was started as the leader of its
# own process group; the whole group gets SIGTERM, then SIGKILL after
# TPLOCAL_GRACE seconds (default 20). Keys, bundles, data and logs stay in
# DIR for the next up (remove DIR to start afresh).
#
# Order: nginx first (no new requests), then bundlepub and the verifierd
# nodes (they drain in-flight requests and flush to NATS), the demo upstream,
# and the NATS servers last. Exit status 1 if anything had to be killed or
# could not be stopped.

set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck source=deploy/local/lib.sh
. "$here/lib.sh"

tplocal_parse_dir "$@"
grace=${TPLOCAL_GRACE:-20}
status=0

[[ -d $PIDS ]] || exit 0

# signal_group NAME SIGNAL: signal NAME's process group if it is ours.
# Prints the group id when there is something to wait for.
signal_group() {
	local name=$1 sig=$2 f=$PIDS/$1.pid pid
	[[ -e $f ]] || return 0
	pid=$(<"$f")
	if ! [[ $pid =~ ^[0-9]+$ ]] || ! tplocal_group_alive "$pid"; then
		rm -f "$f"
		return 0
	fi
	# The leader may have exited while its children live on (an nginx
	# worker): then it cannot be checked by its command line, but the group
	# still carries its number, which nothing else can reuse while the
	# group exists.
	if [[ -e /proc/$pid ]] && ! tplocal_ours "$pid"; then
		tplocal_log "$name: pid $pid is not ours (stale PID file); leaving it"
		rm -f "$f"
		return 0
	fi
	kill "-$sig" -- "-$pid" 2>/dev/null || true
	echo "$pid"
}

# stop NAME...: SIGTERM every group, wait for all, SIGKILL what is left.
stop() {
	local name pid
	local -A groups=()
	for name in "$@"; do
		pid=$(signal_group "$name" TERM)
		if [[ -n $pid ]]; then
			groups[$name]=$pid
		fi
	done
	for name in "${!groups[@]}"; do
		pid=${groups[$name]}
		if ! tplocal_wait_gone "$pid" "$grace"; then
			tplocal_log "$name (pid $pid) still running ${grace}s after SIGTERM: SIGKILL"
			kill -KILL -- "-$pid" 2>/dev/null || true
			status=1
			if ! tplocal_wait_gone "$pid" 5; then
				tplocal_log "$name (pid $pid) survived SIGKILL"
			fi
		fi
		rm -f "$PIDS/$name.pid"
	done
}

stop nginx
stop bundlepub verifierd-1 verifierd-2 verifierd-3
stop demoapi
stop nats-1 nats-2 nats-3

# Anything else a PID file names (a process added to up.sh later).
for f in "$PIDS"/*.pid; do
	[[ -e $f ]] || continue
	stop "$(basename "$f" .pid)"
done
exit "$status"
