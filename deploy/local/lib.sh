# shellcheck shell=bash
# shellcheck disable=SC2034 # the variables set here are used by up.sh and down.sh
# Shared by up.sh and down.sh: the state directory, the ports, and the
# process helpers. Sourced, never run.
#
# Every address is on 127.0.0.1. Ports come from TPLOCAL_BASE_PORT (default
# 18080) plus a fixed offset each, and each can be set on its own:
#
#   TPLOCAL_GATEWAY_PORT        base+0   nginx, auth_request to /_tp/check
#   TPLOCAL_PROXY_GATEWAY_PORT  base+1   nginx, round robin to verifierd proxy mode
#   TPLOCAL_APP_PORT            base+2   demo upstream (demoapi)
#   TPLOCAL_VERIFIER{1,2,3}_PORT base+11..13
#   TPLOCAL_NATS{1,2,3}_PORT     base+21..23 (clients)
#   TPLOCAL_ROUTE{1,2,3}_PORT    base+31..33 (cluster routes)
#   TPLOCAL_MONITOR{1,2,3}_PORT  base+41..43 (NATS monitoring)
#
# The TPLOCAL_ prefix keeps these apart from TPCLUSTER_<FLAG>, which
# verifierd and bundlepub read as flags.

TPLOCAL_HOST=127.0.0.1
TPLOCAL_NODES=(1 2 3)

# tplocal_parse_dir sets DIR from --dir, TPLOCAL_DIR or the default. The
# default is outside the repository: the state directory holds private keys,
# which are never committed (SPEC §10.1).
tplocal_parse_dir() {
	DIR=${TPLOCAL_DIR:-${TMPDIR:-/tmp}/tpcluster-local-$(id -u)}
	while [[ $# -gt 0 ]]; do
		case $1 in
		--dir)
			[[ $# -ge 2 ]] || tplocal_die "--dir needs a value"
			DIR=$2
			shift 2
			;;
		--dir=*)
			DIR=${1#--dir=}
			shift
			;;
		-h | --help)
			sed -n '2,/^$/s/^# \{0,1\}//p' "$0"
			exit 0
			;;
		*) tplocal_die "unknown argument: $1 (usage: $0 [--dir DIR])" ;;
		esac
	done
	mkdir -p "$DIR"
	# An absolute path: it ends up in PID checks and printed commands.
	DIR=$(cd "$DIR" && pwd -P)
	BIN=$DIR/bin
	PIDS=$DIR/pids
	LOGS=$DIR/logs
}

# tplocal_ports sets every port variable from the environment or the base.
tplocal_ports() {
	local base=${TPLOCAL_BASE_PORT:-18080} i
	GATEWAY_PORT=${TPLOCAL_GATEWAY_PORT:-$((base + 0))}
	PROXY_GATEWAY_PORT=${TPLOCAL_PROXY_GATEWAY_PORT:-$((base + 1))}
	APP_PORT=${TPLOCAL_APP_PORT:-$((base + 2))}
	for i in "${TPLOCAL_NODES[@]}"; do
		local v=TPLOCAL_VERIFIER${i}_PORT n=TPLOCAL_NATS${i}_PORT r=TPLOCAL_ROUTE${i}_PORT m=TPLOCAL_MONITOR${i}_PORT
		printf -v "VERIFIER${i}_PORT" '%s' "${!v:-$((base + 10 + i))}"
		printf -v "NATS${i}_PORT" '%s' "${!n:-$((base + 20 + i))}"
		printf -v "ROUTE${i}_PORT" '%s' "${!r:-$((base + 30 + i))}"
		printf -v "MONITOR${i}_PORT" '%s' "${!m:-$((base + 40 + i))}"
	done
}

tplocal_die() {
	echo "tpcluster-local: $*" >&2
	exit 1
}

tplocal_log() {
	echo "tpcluster-local: $*" >&2
}

# tplocal_start NAME CMD... runs CMD in the background in a session of its
# own, so that its process group holds it and every child (nginx workers):
# down.sh signals the group, and nothing is left behind. Output goes to
# logs/NAME.log, never to our stdout: a caller reading our output (a test)
# would otherwise wait for every background process to close it.
tplocal_start() {
	local name=$1
	shift
	# In a non-interactive shell a background child is not a process group
	# leader, so setsid makes it one without forking: $! is the leader.
	setsid "$@" </dev/null >>"$LOGS/$name.log" 2>&1 &
	echo "$!" >"$PIDS/$name.pid"
}

# tplocal_group_alive PGID succeeds while a live process (not a zombie) is
# in the process group PGID. Zombies count as gone: this machine's init may
# never reap a reparented child, and a zombie holds nothing.
tplocal_group_alive() {
	local want=$1 f stat rest state pgrp
	for f in /proc/[0-9]*/stat; do
		read -r stat 2>/dev/null <"$f" || continue
		rest=${stat##*) } # the command name may hold spaces and parentheses
		read -r state _ pgrp _ <<<"$rest"
		if [[ $pgrp == "$want" && $state != Z && $state != X ]]; then
			return 0
		fi
	done
	return 1
}

# tplocal_ours PID succeeds when PID is a process that up.sh started for
# this state directory, so that a stale PID file never makes us signal a
# process that reused the number.
tplocal_ours() {
	local pid=$1 exe cmdline
	[[ -r /proc/$pid/cmdline ]] || return 1
	exe=$(readlink "/proc/$pid/exe" 2>/dev/null || true)
	cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)
	[[ $exe == "$BIN/"* || $cmdline == *"$DIR"* ]]
}

# tplocal_wait_gone PGID SECONDS polls until the group is empty.
tplocal_wait_gone() {
	local pgid=$1 deadline=$((SECONDS + $2))
	while tplocal_group_alive "$pgid"; do
		((SECONDS < deadline)) || return 1
		sleep 0.2
	done
}
