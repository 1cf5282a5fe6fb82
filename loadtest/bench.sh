#!/usr/bin/env bash
# loadtest/bench.sh: issue 9's load test, every scenario in one run on this
# machine, with one request recipe (tpload, the demo world, seed 1):
#
#   a. crypto ceiling: two ed25519.Verify per decision, all cores and one;
#   b. the demo upstream directly, and through a plain httputil.ReverseProxy;
#   c. verifierd proxy mode with its embedded single-node ledger (R1);
#   d. three verifierd nodes on a three-node NATS cluster, R3 ledger
#      (deploy/local/up.sh, bundles from files);
#   e. nginx auth_request (deploy/local, the shipped config) in front of
#      those nodes' check mode.
#
# Each: closed loop (64 workers) for the maximum, then open loop at half of
# it for latency, with the CPU time of the processes under test per
# request. Serial costs come from the same run: the one-core ceiling and
# `go test -bench BenchmarkConsume/R[13]/serial` in internal/ledger.
#
# Writes loadtest/results/*.json (tpload reports, summary.json) and
# replaces the "Load test" section of docs/PERFORMANCE.md. Everything
# listens on 127.0.0.1; everything started here is stopped on exit.
#
# Environment: BENCH_DURATION (each run, default 10s), BENCH_DIR (scratch
# directory, default a new one under /tmp), GO (default go).

set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
GO=${GO:-go}
DUR=${BENCH_DURATION:-10s}
dur_s=${DUR%s}
WORK=${BENCH_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/tpbench.XXXXXX")}
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd -P)
BIN=$WORK/bin
RESULTS=$root/loadtest/results
LOCAL=$WORK/local # deploy/local state; its keys are the demo world every run uses
KEYS=$LOCAL/keys
started_at=$(date -u +%Y-%m-%dT%H:%M:%SZ)
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
t0=$SECONDS

log() { echo "bench: $*" >&2; }

# Ports: a random block, so a second checkout's bench does not collide.
base=$((10000 + RANDOM % 20000)) # below the ephemeral ports (32768-60999 by default)
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
log "scratch directory $WORK"
(cd "$root" && "$GO" build -o "$BIN/" ./cmd/verifierd ./cmd/tpload ./cmd/demoapi)
mkdir -p "$RESULTS"
rm -f "$RESULTS"/*.json "$RESULTS"/*.txt
"$BIN/demoapi" --prepare "$KEYS" >/dev/null

# tpload RUN-NAME FLAGS...: one tpload run; JSON and text into results.
tpload() {
	local name=$1
	shift
	log "$name"
	# tpload exits 1 when sends failed: the bench keeps that run like any
	# other (its report counts the errors) and goes on; any other failure
	# (2: a bad flag) stops it.
	local st=0
	"$BIN/tpload" --world "$KEYS" --no-progress --seed 1 --json "$RESULTS/$name.json" "$@" | tee "$RESULTS/$name.txt" >&2 || st=${PIPESTATUS[0]}
	case $st in
	0) ;;
	1) log "$name: tpload reports failed sends (errors in $RESULTS/$name.txt)" ;;
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
log "ledger serial benchmarks"
(cd "$root" && "$GO" test -run '^$' -bench 'BenchmarkConsume/R[13]/serial$' -benchtime 2000x -count 1 ./internal/ledger) \
	>"$RESULTS/ledger-bench.txt" 2>&1 || { cat "$RESULTS/ledger-bench.txt" >&2; exit 1; }

# --- a. crypto ceiling ---------------------------------------------------------------------
tpload ceiling --mode ceiling --workers 0 --requests 10000000 --duration "$DUR"
tpload ceiling-1core --mode ceiling --workers 1 --requests 10000000 --duration 5s

# --- b. direct and plain proxy ----------------------------------------------------------------
UP=http://127.0.0.1:$UP_PORT PROXY=http://127.0.0.1:$PROXY_PORT
start upstream "$BIN/tpload" upstream --listen "127.0.0.1:$UP_PORT"
up_pid=$STARTED
start proxy "$BIN/tpload" proxy --listen "127.0.0.1:$PROXY_PORT" --upstream "$UP"
proxy_pid=$STARTED
sleep 0.5
wait_http "$UP/" "$up_pid"
wait_http "$PROXY/" "$proxy_pid"
pair direct 400000 --expect upstream --distinct 20000 --target "$UP" --pid-upstream "$up_pid" "${MIX[@]}"
pair proxy 400000 --expect upstream --distinct 20000 --target "$PROXY" --pid-proxy "$proxy_pid" --pid-upstream "$up_pid" "${MIX[@]}"
stop "$proxy_pid"

# --- c. verifierd, embedded NATS, R1 ------------------------------------------------------------
R1=http://127.0.0.1:$R1_PORT
start verifierd-r1 "$BIN/verifierd" --listen "127.0.0.1:$R1_PORT" --upstream "$UP" \
	--data-dir "$WORK/r1-data" --nats-listen "127.0.0.1:$R1_NATS_PORT" --node-id bench-r1 \
	--trust-material "$KEYS/trust-material.json" --policy-bundle "$KEYS/policy-bundle.json" \
	--bundle-public-key "$KEYS/bundle.pub" --log-level warn
r1_pid=$STARTED
wait_http "$R1/_tp/readyz" "$r1_pid"
pair r1 "$VERIFIER_REQUESTS" --target "$R1" --pid-verifier "$r1_pid" --pid-upstream "$up_pid" "${MIX[@]}"
R1_HALF=$HALF
# The same rate with denials mixed in: every answer must be the intended one.
tpload r1-mixed --mode open --rate "$R1_HALF" --workers 256 --requests $((R1_HALF * dur_s)) --duration "$DUR" \
	--target "$R1" --pid-verifier "$r1_pid" "${MIX[@]}" --replay-share 0.1 --tamper-share 0.05 --bad-passport-share 0.05
direct_at r1 "$R1_HALF" "$UP" "${MIX[@]}"
stop "$r1_pid"
stop "$up_pid"

# --- d, e. deploy/local: 3 nats-server, 3 verifierd (R3), nginx -----------------------------------
log "deploy/local/up.sh"
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
IFS=, read -r -a V_URLS <<<"$TPLOCAL_VERIFIER_URLS"
targets=()
for u in "${V_URLS[@]}"; do targets+=(--target "$u"); done

pair r3 "$VERIFIER_REQUESTS" "${targets[@]}" --pid-verifier "$V_PIDS" --pid-nats "$N_PIDS" --pid-upstream "$APP_PID" "${MIX[@]}"
direct_at r3 "$HALF" "$TPLOCAL_APP_URL" "${MIX[@]}"

# nginx sends no body to the auth subrequest and the demo world's POST
# route does not take the body hash from the gateway: GETs only here.
pair nginx "$VERIFIER_REQUESTS" --target "$TPLOCAL_GATEWAY_URL" --pid-nginx "$NGINX_PIDS" \
	--pid-verifier "$V_PIDS" --pid-nats "$N_PIDS" --pid-upstream "$APP_PID" --get-share 1
direct_at nginx "$HALF" "$TPLOCAL_APP_URL" --get-share 1

"$root/deploy/local/down.sh" --dir "$LOCAL" >&2
local_up=0

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
	audit="on: every decision is published to the audit stream, verifierd's defaults (--audit-replicas 1 unless deploy/local sets it)"
fi
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
mem=$(awk '/^MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)
"$BIN/tpload" summarize --results "$RESULTS" --doc "$root/docs/PERFORMANCE.md" \
	--header "Measured $started_at by \`loadtest/bench.sh\` (BENCH_DURATION=$DUR per run) at commit $commit, in $(((SECONDS - t0) / 60)) min." \
	--header "Machine: $(nproc) vCPU \"$cpu\", $mem, Linux $(uname -r) $(uname -m); $("$GO" version | cut -d' ' -f3); $(nginx -v 2>&1 | sed 's|.*nginx/|nginx |'); nats-server $("$LOCAL/bin/nats-server" --version | sed 's/.*v//'); shared with other work, so rates are pessimistic and CPU per request is the figure to trust." \
	--header "Load average (1, 5, 15 min) before the run: $load_before; after: $(cut -d' ' -f1-3 /proc/loadavg). Above 2 means other work competed for the 2 cores: latency figures are then the machine's, not the verifier's." \
	--header "Load: tpload, one signed request per send (passport + proof signed before the clock starts), 50% GET / 50% POST with a 1 KiB body (nginx: GETs only, see below), closed loop with 64 workers, open loop with up to 256 in flight and latency from each due time. CPU: utime+stime from /proc of the processes under test, per answered request. tpload itself runs on the same 2 cores." \
	--header "Audit: $audit. d and e use deploy/local with bundles from files (TPLOCAL_BUNDLES=file). Raw reports: \`loadtest/results/\`." \
	>/dev/null
log "done in $((SECONDS - t0)) s; results in $RESULTS, table in docs/PERFORMANCE.md"
