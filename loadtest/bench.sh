#!/usr/bin/env bash
# loadtest/bench.sh: the verifier's load test, every scenario in one run on
# this machine, with one request recipe (tpload, the demo world, seed 1):
#
#   ledger:  `go test -bench BenchmarkConsume/R[13]/sync-always/serial` in
#            internal/ledger (the serial cost of one consume, with the
#            shipped sync_interval: always);
#   ceiling: two ed25519.Verify per decision, all cores and one;
#   direct, proxy: the demo upstream directly, and through a plain
#            httputil.ReverseProxy;
#   r1:      verifierd proxy mode with its embedded single-node ledger;
#   r3:      three verifierd nodes on a three-node NATS cluster, R3 ledger
#            (deploy/local/up.sh, bundles from files);
#   nginx:   nginx auth_request (deploy/local, the shipped config) in front
#            of those nodes' check mode;
#   floor:   the NATS floor on the same three servers (tpload nats-floor):
#            the JetStream work of one decision, raw (one create-only put
#            into a copy of the ledger bucket, one event into a copy of the
#            audit stream, same sizes and headers, connections placed like
#            the verifiers'), at r3's two rates, closed loop, and with the
#            audit events sent in bursts; needs r3 in the same run.
#
# r3, nginx and floor read the nats-servers' counters (/varz, /jsz, /connz)
# around each run: the table says what ran (ledger and audit replicas,
# shards, audit events per decision, sync_interval) as the servers report
# it, and the messages and API requests per decision.
#
# Each load scenario: closed loop (64 workers) for the maximum, then open
# loop at half of it for latency, with the CPU time of the processes under
# test per request.
#
# Usage: loadtest/bench.sh [--out DIR] [--base-port N] [--scenarios LIST]
#
#   --out DIR         where everything is written (env BENCH_OUT; default
#                     loadtest/results/<UTC timestamp>/): the tpload reports
#                     (*.json, *.txt), summary.json, summary.md (the "Load
#                     test" section for docs/PERFORMANCE.md, which this script
#                     never edits) and the charts (*.svg, loadtest/chart).
#   --base-port N     first of the loopback ports (env BENCH_BASE_PORT):
#                     upstream N, plain proxy N+1, verifierd N+2, its NATS N+3,
#                     deploy/local from N+100. Default: a random block in
#                     10000-29999, so two checkouts' benches rarely collide.
#   --scenarios LIST  comma-separated subset of
#                     ledger,ceiling,direct,proxy,r1,r3,nginx,floor (env
#                     BENCH_SCENARIOS; default all). The summary needs
#                     ceiling; the charts need one of the load scenarios.
#
# Everything listens on 127.0.0.1; everything started here is stopped on
# exit. Environment also: BENCH_DURATION (each run, default 10s),
# BENCH_DIR (scratch directory, default a new one under /tmp), GO
# (default go).

set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
GO=${GO:-go}
DUR=${BENCH_DURATION:-10s}
dur_s=${DUR%s}
RESULTS=${BENCH_OUT:-}
BASE_PORT=${BENCH_BASE_PORT:-}
SCENARIOS=${BENCH_SCENARIOS:-ledger,ceiling,direct,proxy,r1,r3,nginx,floor}

usage() { sed -n '/^# Usage:/,/^$/p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; }
die_usage() { echo "bench: $*" >&2; usage; exit 2; }
while (($#)); do
	case $1 in
	--out) (($# >= 2)) || die_usage "--out needs a directory"; RESULTS=$2; shift 2 ;;
	--out=*) RESULTS=${1#*=}; shift ;;
	--base-port) (($# >= 2)) || die_usage "--base-port needs a number"; BASE_PORT=$2; shift 2 ;;
	--base-port=*) BASE_PORT=${1#*=}; shift ;;
	--scenarios) (($# >= 2)) || die_usage "--scenarios needs a list"; SCENARIOS=$2; shift 2 ;;
	--scenarios=*) SCENARIOS=${1#*=}; shift ;;
	-h | --help) usage; exit 0 ;;
	*) die_usage "unknown argument \"$1\"" ;;
	esac
done
if [[ -n $BASE_PORT ]] && ! [[ $BASE_PORT =~ ^[0-9]+$ && $BASE_PORT -ge 1024 && $BASE_PORT -le 65000 ]]; then
	die_usage "--base-port=$BASE_PORT (BENCH_BASE_PORT): must be a number from 1024 to 65000 (the block runs to N+105)"
fi
IFS=, read -r -a wanted <<<"$SCENARIOS"
for sc in "${wanted[@]}"; do
	case $sc in
	ledger | ceiling | direct | proxy | r1 | r3 | nginx | floor) ;;
	*) die_usage "--scenarios=$SCENARIOS (BENCH_SCENARIOS): unknown scenario \"$sc\"; known: ledger,ceiling,direct,proxy,r1,r3,nginx,floor" ;;
	esac
done
if [[ ,$SCENARIOS, == *,floor,* && ,$SCENARIOS, != *,r3,* ]]; then
	# The floor runs at r3's rates and copies the messages r3 wrote.
	die_usage "--scenarios=$SCENARIOS (BENCH_SCENARIOS): floor needs r3 in the same run"
fi
# want NAME: NAME was asked for.
want() {
	local sc
	for sc in "${wanted[@]}"; do [[ $sc == "$1" ]] && return 0; done
	return 1
}

started_at=$(date -u +%Y-%m-%dT%H:%M:%SZ)
RESULTS=${RESULTS:-$root/loadtest/results/$(date -u +%Y%m%dT%H%M%SZ)}
if [[ -e $RESULTS && -n $(ls -A "$RESULTS" 2>/dev/null) ]]; then
	# Never mix two runs' reports: the summary and charts read every file.
	die_usage "--out=$RESULTS: exists and is not empty; give a new directory"
fi
mkdir -p "$RESULTS"
RESULTS=$(cd "$RESULTS" && pwd -P)
WORK=${BENCH_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/tpbench.XXXXXX")}
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd -P)
BIN=$WORK/bin
LOCAL=$WORK/local # deploy/local state; its keys are the demo world every run uses
KEYS=$LOCAL/keys
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
t0=$SECONDS

log() { echo "bench: $*" >&2; }

# Ports: --base-port, else a random block, so a second checkout's bench
# does not collide; below the ephemeral ports (32768-60999 by default).
base=${BASE_PORT:-$((10000 + RANDOM % 20000))}
UP_PORT=$base PROXY_PORT=$((base + 1)) R1_PORT=$((base + 2)) R1_NATS_PORT=$((base + 3))
export TPLOCAL_BASE_PORT=$((base + 100)) TPLOCAL_DIR=$LOCAL TPLOCAL_BUNDLES=file

# --- cleanup ---------------------------------------------------------------------
pids=()      # processes started here
local_up=0   # deploy/local is up
cleanup() {
	local pid i
	if [[ $local_up == 1 ]]; then
		"$root/deploy/local/down.sh" --dir "$LOCAL" >&2 || true
	fi
	for pid in "${pids[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for pid in "${pids[@]}"; do
		for ((i = 0; i < 100; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.2
		done
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start NAME CMD...: run CMD in the background, logging to $WORK/NAME.log;
# its PID is left in STARTED (not printed: a command substitution would
# start it in a subshell, out of reach of cleanup).
start() {
	local name=$1
	shift
	"$@" </dev/null >"$WORK/$name.log" 2>&1 &
	STARTED=$!
	pids+=("$STARTED")
}

# stop PID: SIGTERM, wait (at most 20 s), then SIGKILL.
stop() {
	local pid=$1 i
	kill -TERM "$pid" 2>/dev/null || return 0
	for ((i = 0; i < 100; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.2
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

# wait_http URL PID: poll URL until it answers 200 (at most 60 s).
wait_http() {
	local url=$1 pid=$2 i code
	for ((i = 0; i < 300; i++)); do
		code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$url" || true)
		[[ $code == 200 ]] && return 0
		kill -0 "$pid" 2>/dev/null || { log "process $pid exited; logs in $WORK"; exit 1; }
		sleep 0.2
	done
	log "$url not ready after 60 s"
	exit 1
}

# --- build and world ------------------------------------------------------------------
log "scratch directory $WORK, results in $RESULTS, ports from $base"
(cd "$root" && "$GO" build -o "$BIN/" ./cmd/verifierd ./cmd/tpload ./cmd/demoapi ./loadtest/chart)
# Two demo worlds. deploy/local's (d, e, floor) is the one up.sh would
# make (it keeps one it finds): an audit key and a backend assertion key
# for each of its nodes, listed in the trust material, and orders.get asks
# for a backend assertion. The R1 node's (a to c) is the plain world: no
# node keys, as the R1 node is started without them.
"$BIN/demoapi" --prepare "$KEYS" --audit-nodes local-1,local-2,local-3 >/dev/null
R1_KEYS=$WORK/r1-world
"$BIN/demoapi" --prepare "$R1_KEYS" >/dev/null
WORLD=$R1_KEYS # the world tpload signs with

# tpload RUN-NAME FLAGS...: one tpload run; JSON and text into results.
tpload() {
	local name=$1
	shift
	log "$name"
	# tpload exits 1 when sends failed: the bench keeps that run like any
	# other (its report counts the errors) and goes on; any other failure
	# (2: a bad flag) stops it.
	local st=0
	"$BIN/tpload" --world "$WORLD" --no-progress --seed 1 --json "$RESULTS/$name.json" "$@" | tee "$RESULTS/$name.txt" >&2 || st=${PIPESTATUS[0]}
	case $st in
	0) ;;
	1) log "$name: tpload reports failed sends (errors in $RESULTS/$name.txt)" ;;
	*) exit "$st" ;;
	esac
}

# floor RUN-NAME FLAGS...: one tpload nats-floor run on deploy/local's
# servers; JSON and text into results. Exit status as in tpload.
floor() {
	local name=$1
	shift
	log "$name"
	local st=0
	"$BIN/tpload" nats-floor --nats-url "$TPLOCAL_NATS_URLS" --nats-creds "$TPLOCAL_NATS_DIR/admin.creds" \
		--nats-ca "$TPLOCAL_NATS_DIR/ca.pem" --like-connections verifierd --pid-nats "$N_PIDS" \
		--nats-monitor "$MONITORS" --duration "$DUR" --json "$RESULTS/$name.json" "$@" |
		tee "$RESULTS/$name.txt" >&2 || st=${PIPESTATUS[0]}
	case $st in
	0) ;;
	1)
		# A run that never started (its streams could not be made) wrote
		# no report: the comparison would silently lose its row.
		[[ -s $RESULTS/$name.json ]] || { log "$name: tpload nats-floor did not run; see $RESULTS/$name.txt and the error above"; exit 1; }
		log "$name: tpload nats-floor reports failed pairs (errors in $RESULTS/$name.txt)"
		;;
	*) exit "$st" ;;
	esac
}

# throughput NAME: the answers per second of a report.
throughput() {
	sed -n 's/^  "throughput_per_sec": \([0-9.e+]*\),*$/\1/p' "$RESULTS/$1.json"
}

# pair NAME MIX-FLAGS -- FLAGS...: closed loop for the maximum, then open
# loop at half of it. Verifier runs sign one request per send.
pair() {
	local name=$1 requests=$2
	shift 2
	tpload "$name-closed" --mode closed --workers 64 --requests "$requests" --duration "$DUR" "$@"
	HALF=$(awk -v t="$(throughput "$name-closed")" 'BEGIN { printf "%d", t / 2 }')
	tpload "$name-open" --mode open --rate "$HALF" --workers 256 \
		--requests $((HALF * dur_s + HALF / 10 + 1)) --duration "$DUR" "$@"
}

# direct_at NAME RATE UPSTREAM MIX...: the upstream alone at another
# scenario's open-loop rate, for the latency it adds.
direct_at() {
	local name=$1 rate=$2 up=$3
	shift 3
	tpload "direct-at-$name" --mode open --rate "$rate" --workers 256 --expect upstream --distinct 20000 \
		--requests $((rate * dur_s + rate / 10 + 1)) --duration "$DUR" --target "$up" "$@"
}

MIX=(--get-share 0.5 --body-sizes 1024)
VERIFIER_REQUESTS=${BENCH_VERIFIER_REQUESTS:-80000}

# --- serial ledger cost (before anything else runs) ---------------------------------------
if want ledger; then
	log "ledger serial benchmarks"
	(cd "$root" && "$GO" test -run '^$' -bench 'BenchmarkConsume/R[13]/sync-always/serial$' -benchtime 2000x -count 1 ./internal/ledger) \
		>"$RESULTS/ledger-bench.txt" 2>&1 || { cat "$RESULTS/ledger-bench.txt" >&2; exit 1; }
fi

# --- a. crypto ceiling ---------------------------------------------------------------------
if want ceiling; then
	tpload ceiling --mode ceiling --workers 0 --requests 10000000 --duration "$DUR"
	tpload ceiling-1core --mode ceiling --workers 1 --requests 10000000 --duration 5s
fi

# --- b. direct and plain proxy ----------------------------------------------------------------
UP=http://127.0.0.1:$UP_PORT PROXY=http://127.0.0.1:$PROXY_PORT
up_pid=
if want direct || want proxy || want r1; then
	start upstream "$BIN/tpload" upstream --listen "127.0.0.1:$UP_PORT"
	up_pid=$STARTED
	wait_http "$UP/" "$up_pid"
fi
if want direct; then
	pair direct 400000 --expect upstream --distinct 20000 --target "$UP" --pid-upstream "$up_pid" "${MIX[@]}"
fi
if want proxy; then
	start proxy "$BIN/tpload" proxy --listen "127.0.0.1:$PROXY_PORT" --upstream "$UP"
	proxy_pid=$STARTED
	wait_http "$PROXY/" "$proxy_pid"
	pair proxy 400000 --expect upstream --distinct 20000 --target "$PROXY" --pid-proxy "$proxy_pid" --pid-upstream "$up_pid" "${MIX[@]}"
	stop "$proxy_pid"
fi

# --- c. verifierd, embedded NATS, R1 ------------------------------------------------------------
if want r1; then
	R1=http://127.0.0.1:$R1_PORT
	start verifierd-r1 "$BIN/verifierd" --listen "127.0.0.1:$R1_PORT" --upstream "$UP" \
		--data-dir "$WORK/r1-data" --nats-listen "127.0.0.1:$R1_NATS_PORT" --node-id bench-r1 \
		--trust-material "$R1_KEYS/trust-material.json" --policy-bundle "$R1_KEYS/policy-bundle.json" \
		--bundle-public-key "$R1_KEYS/bundle.pub" --log-level warn
	r1_pid=$STARTED
	wait_http "$R1/_tp/readyz" "$r1_pid"
	pair r1 "$VERIFIER_REQUESTS" --target "$R1" --pid-verifier "$r1_pid" --pid-upstream "$up_pid" "${MIX[@]}"
	R1_HALF=$HALF
	# The same rate with denials mixed in: every answer must be the intended one.
	tpload r1-mixed --mode open --rate "$R1_HALF" --workers 256 --requests $((R1_HALF * dur_s)) --duration "$DUR" \
		--target "$R1" --pid-verifier "$r1_pid" "${MIX[@]}" --replay-share 0.1 --tamper-share 0.05 --bad-passport-share 0.05
	direct_at r1 "$R1_HALF" "$UP" "${MIX[@]}"
	stop "$r1_pid"
fi
[[ -z $up_pid ]] || stop "$up_pid"

# --- d, e. deploy/local: 3 nats-server, 3 verifierd (R3), nginx -----------------------------------
if want r3 || want nginx || want floor; then
	log "deploy/local/up.sh"
	WORLD=$KEYS
	local_up=1
	"$root/deploy/local/up.sh" --dir "$LOCAL" >"$WORK/local-up.log"
	# shellcheck disable=SC1091 # written by up.sh
	. "$LOCAL/env"
	pidof_local() { cat "$LOCAL/pids/$1.pid"; }
	V_PIDS=$(pidof_local verifierd-1),$(pidof_local verifierd-2),$(pidof_local verifierd-3)
	N_PIDS=$(pidof_local nats-1),$(pidof_local nats-2),$(pidof_local nats-3)
	NGINX_MASTER=$(pidof_local nginx)
	NGINX_PIDS=$NGINX_MASTER$(pgrep -P "$NGINX_MASTER" | sed 's/^/,/' | tr -d '\n')
	APP_PID=$(pidof_local demoapi)
	# The servers' monitoring listeners, as deploy/local/lib.sh numbers them.
	MONITORS=""
	for i in 1 2 3; do
		m=TPLOCAL_MONITOR${i}_PORT
		MONITORS+="${MONITORS:+,}http://127.0.0.1:${!m:-$((TPLOCAL_BASE_PORT + 40 + i))}"
	done
	IFS=, read -r -a V_URLS <<<"$TPLOCAL_VERIFIER_URLS"
	targets=()
	for u in "${V_URLS[@]}"; do targets+=(--target "$u"); done

	if want r3; then
		pair r3 "$VERIFIER_REQUESTS" "${targets[@]}" --pid-verifier "$V_PIDS" --pid-nats "$N_PIDS" --pid-upstream "$APP_PID" \
			--nats-monitor "$MONITORS" "${MIX[@]}"
		R3_HALF=$HALF
		R3_MAX=$(awk -v t="$(throughput r3-closed)" 'BEGIN { printf "%d", t }')
		if want floor; then
			# Right after r3, at its two rates: the same machine state.
			floor floor-at-max --mode open --rate "$R3_MAX" --workers 256
			floor floor-open --mode open --rate "$R3_HALF" --workers 256
		fi
		direct_at r3 "$HALF" "$TPLOCAL_APP_URL" "${MIX[@]}"
	fi

	# nginx sends no body to the auth subrequest and the demo world's POST
	# route does not take the body hash from the gateway: GETs only here.
	if want nginx; then
		pair nginx "$VERIFIER_REQUESTS" --target "$TPLOCAL_GATEWAY_URL" --pid-nginx "$NGINX_PIDS" \
			--pid-verifier "$V_PIDS" --pid-nats "$N_PIDS" --pid-upstream "$APP_PID" --nats-monitor "$MONITORS" --get-share 1
		direct_at nginx "$HALF" "$TPLOCAL_APP_URL" --get-share 1
	fi

	if want floor; then
		# NATS's own maximum here (the same 64 in flight as the closed
		# loops), and the lever: audit events sent in 5 ms bursts.
		floor floor-closed --mode closed --workers 64
		floor floor-linger --mode open --rate "$R3_HALF" --workers 256 --audit-linger 5ms
	fi

	nats_version=$("$LOCAL/bin/nats-server" --version | sed 's/.*v//')
	"$root/deploy/local/down.sh" --dir "$LOCAL" >&2
	local_up=0
fi

# --- summary -----------------------------------------------------------------------------------
commit=$(git -C "$root" rev-parse --short HEAD)
if [[ -n $(git -C "$root" status --porcelain -- cmd internal go.mod 2>/dev/null) ]]; then
	commit+=" plus uncommitted changes in the shared working tree (cmd/, internal/ or go.mod)"
fi
audit="off: not wired into verifierd at this commit (no --audit-* flags)"
# The help text is read whole: under pipefail, "verifierd -h | grep -q"
# fails at random when grep exits before verifierd has written (SIGPIPE).
verifierd_help=$("$BIN/verifierd" -h 2>&1 || true)
if [[ $verifierd_help == *-audit-replicas* ]]; then
	audit="on: every decision is published to the audit stream; for d and e the table's second column says what the nats-servers reported (deploy/local: tpnats setup and verifierd --audit-replicas 3, deploy/nats/local.conf sync_interval always), c runs verifierd's defaults (embedded server, R1)"
fi
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
mem=$(awk '/^MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)
# The summary goes beside the reports as summary.md; docs/PERFORMANCE.md is
# edited by hand from it, so a bench run never rewrites a reviewed document.
# tpload summarize needs the ceiling run (the table is relative to it).
if want ceiling; then
	"$BIN/tpload" summarize --results "$RESULTS" --doc "" \
		--header "Measured $started_at by \`loadtest/bench.sh\` (BENCH_DURATION=$DUR per run) at commit $commit, in $(((SECONDS - t0) / 60)) min." \
		--header "Machine: $(nproc) vCPU \"$cpu\", $mem, Linux $(uname -r) $(uname -m); $("$GO" version | cut -d' ' -f3); $(nginx -v 2>&1 | sed 's|.*nginx/|nginx |'); nats-server ${nats_version:-not run}; shared with other work, so rates are pessimistic and CPU per request is the figure to trust." \
		--header "Load average (1, 5, 15 min) before the run: $load_before; after: $(cut -d' ' -f1-3 /proc/loadavg). Above 2 means other work competed for the 2 cores: latency figures are then the machine's, not the verifier's." \
		--header "Load: tpload, one signed request per send (passport + proof signed before the clock starts), 50% GET / 50% POST with a 1 KiB body (nginx: GETs only, see below), closed loop with 64 workers, open loop with up to 256 in flight and latency from each due time. CPU: utime+stime from /proc of the processes under test, per answered request. tpload itself runs on the same 2 cores." \
		--header "Audit: $audit. d and e use deploy/local with bundles from files (TPLOCAL_BUNDLES=file), as up.sh runs it: each node signs its audit events and mints a backend assertion (Ed25519) for each GET (orders.get); the R1 node of c does neither. Raw reports: \`${RESULTS#"$root"/}/\`." \
		>"$RESULTS/summary.md"
fi
if want direct || want proxy || want r1 || want r3 || want nginx; then
	"$BIN/chart" --results "$RESULTS" --out "$RESULTS"
fi
log "done in $((SECONDS - t0)) s; results, summary.md and charts in $RESULTS"
