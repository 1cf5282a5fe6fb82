#!/usr/bin/env bash
# up.sh [--dir DIR] [--reset]: a whole tpcluster on this machine, as real processes on
# 127.0.0.1: a three-node NATS JetStream cluster (deploy/nats/local.conf),
# three verifierd nodes joined to it with an R3 replay ledger, bundles
# published over NATS by bundlepub with freshness beacons (or, while this
# checkout's bundlepub cannot publish, read from signed files by each node),
# a demo upstream, and nginx in front of the nodes (round robin): one
# listener uses auth_request to /_tp/check (deploy/nginx), one forwards to
# the nodes' proxy mode.
#
# It builds the binaries from this checkout (nats-server at the version
# go.mod requires), generates keys (0600, under DIR, never committed) and
# signed bundles, and a NATS security set under DIR/nats (tpnats init: a CA,
# server certificates and one creds file per role, verifier, bundlepub,
# audit-reader and admin, all 0600; docs/NATS-SECURITY.md): NATS runs with
# TLS and those users only, the streams are created by admin (tpnats setup)
# and every process connects as its role. It starts everything, waits until every node's /_tp/readyz
# answers 200 and prints how to send a request. State, logs and PID files
# live under DIR (default: $TPLOCAL_DIR, else ${TMPDIR:-/tmp}/tpcluster-local-UID).
# Keys and signed bundles already in DIR/keys are kept, so a second up
# serves the same sequence and digests (routes, clients and key removals
# made there survive); --reset deletes DIR/keys and DIR/data first and
# starts from a new demo world.
# deploy/local/down.sh [--dir DIR] stops all of it.
#
# Environment: ports as in lib.sh (TPLOCAL_BASE_PORT=18080 and overrides);
# TPLOCAL_BUNDLES=auto|nats|file (auto: nats when bundlepub publish exists);
# TPLOCAL_TIMEOUT readiness deadline in seconds (default 120); GO, the go
# command (default go).

set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
root=$(cd "$here/../.." && pwd -P)
# shellcheck source=deploy/local/lib.sh
. "$here/lib.sh"

# --reset is up.sh's own; lib.sh parses the rest.
reset=0
dir_args=()
for a in "$@"; do
	if [[ $a == --reset ]]; then reset=1; else dir_args+=("$a"); fi
done
tplocal_parse_dir "${dir_args[@]}"
tplocal_ports
GO=${GO:-go}
timeout_s=${TPLOCAL_TIMEOUT:-120}
bundles_mode=${TPLOCAL_BUNDLES:-auto}

command -v curl >/dev/null || tplocal_die "curl is needed to wait for readiness"
command -v setsid >/dev/null || tplocal_die "setsid (util-linux) is needed"
NGINX=$(command -v nginx || true)
if [[ -z $NGINX && -x /usr/sbin/nginx ]]; then
	NGINX=/usr/sbin/nginx
fi
[[ -n $NGINX ]] || tplocal_die "nginx not found: apt-get install nginx-light"

mkdir -p "$BIN" "$PIDS" "$LOGS"
for f in "$PIDS"/*.pid; do
	[[ -e $f ]] || continue
	pid=$(<"$f")
	if tplocal_ours "$pid" && tplocal_group_alive "$pid"; then
		tplocal_die "already running in $DIR ($(basename "$f" .pid), pid $pid): run $here/down.sh --dir $DIR first"
	fi
	rm -f "$f"
done

# From here on, a failure stops whatever was started, so a failed up
# leaves nothing running either.
ok=0
cleanup() {
	if [[ $ok != 1 ]]; then
		tplocal_log "start-up failed; last lines of each log:"
		for l in "$LOGS"/*.log; do
			[[ -e $l ]] || continue
			echo "--- $l" >&2
			tail -n 15 "$l" >&2 || true
		done
		"$here/down.sh" --dir "$DIR" >&2 || true
	fi
}
trap cleanup EXIT

# --- build -----------------------------------------------------------------
tplocal_log "building binaries into $BIN"
(
	cd "$root"
	"$GO" build -o "$BIN/" ./cmd/verifierd ./cmd/tpcurl ./cmd/demoapi ./cmd/tpnats ./cmd/tpaudit
	# Debian's nats-server is too old for per-key TTLs (SPEC §7): build the
	# version go.mod requires.
	"$GO" build -o "$BIN/nats-server" github.com/nats-io/nats-server/v2
)
have_bundlepub=0
if (cd "$root" && "$GO" build -o "$BIN/" ./cmd/bundlepub) >"$LOGS/build-bundlepub.log" 2>&1; then
	have_bundlepub=1
fi

# NATS bundle mode needs bundlepub publish with beacons and a verifierd
# that reads bundles from KV (--beacon-public-key).
# Help texts are read whole: with pipefail, "cmd -h | grep -q" fails at
# random when grep exits before cmd has written everything (SIGPIPE).
verifierd_help=$("$BIN/verifierd" -h 2>&1 || true)
publish_help=""
if [[ $have_bundlepub == 1 ]]; then
	publish_help=$("$BIN/bundlepub" publish -h 2>&1 || true)
fi
nats_bundles_possible=0
if [[ $publish_help == *-beacon-key* && $verifierd_help == *-beacon-public-key* ]]; then
	nats_bundles_possible=1
fi
case $bundles_mode in
auto)
	bundles_mode="file"
	[[ $nats_bundles_possible == 1 ]] && bundles_mode=nats
	;;
nats) [[ $nats_bundles_possible == 1 ]] || tplocal_die "TPLOCAL_BUNDLES=nats: this checkout's bundlepub publish or verifierd --beacon-public-key is missing" ;;
file) ;;
*) tplocal_die "TPLOCAL_BUNDLES=$bundles_mode: want auto, nats or file" ;;
esac

# --- keys and bundles --------------------------------------------------------
# The demo world: a caller key and a bundle-signing key (0600), a signed
# trust material and policy bundle. Made once: regenerating on every up
# would sign a fresh world with a higher sequence, which every node accepts
# as newer, so routes or clients added in DIR/keys would vanish and a
# removed key would be accepted again. Only --reset starts over,
# and then the NATS and verifierd state of the old world goes too (the
# bucket's and the nodes' cached bundles are signed by the old key).
KEYS=$DIR/keys
# Each node gets an audit key (0600) listed in the signed trust material's
# audit_nodes, so tpaudit verify can authenticate the audit stream
# (docs/AUDIT.md).
audit_nodes=""
for i in "${TPLOCAL_NODES[@]}"; do
	audit_nodes+="${audit_nodes:+,}local-$i"
done
if [[ $reset == 1 ]]; then
	tplocal_log "--reset: deleting $KEYS and $DIR/data"
	rm -rf "$KEYS" "$DIR/data"
fi
if [[ -e $KEYS/trust-material.json && -e $KEYS/policy-bundle.json ]]; then
	for i in "${TPLOCAL_NODES[@]}"; do
		[[ -e $KEYS/audit-local-$i.key ]] ||
			tplocal_die "$KEYS has bundles but no audit key for local-$i (made by an older up.sh): run $0 --dir $DIR --reset"
	done
	tplocal_log "keeping the keys and signed bundles in $KEYS (--reset makes new ones)"
else
	"$BIN/demoapi" --prepare "$KEYS" --audit-nodes "$audit_nodes" >"$LOGS/prepare.log"
fi
if [[ $bundles_mode == nats && ! -e $KEYS/beacon.key ]]; then
	# A beacon key of its own: the publishing host never holds the key that
	# authors policy (SPEC §8.3).
	"$BIN/bundlepub" keygen --out "$KEYS/beacon" --kid local-beacon-1 >>"$LOGS/prepare.log"
fi

# --- NATS security ----------------------------------------------------------
# Made once and kept: JetStream keeps its data under the account, so a new
# set would strand the ledger of an earlier run. Issue 12: no client gets
# in without one of these credentials, and none but admin may create,
# change, purge or delete a stream.
NATSDIR=$DIR/nats
if [[ ! -e $NATSDIR/auth.conf ]]; then
	"$BIN/tpnats" init --dir "$NATSDIR" >>"$LOGS/prepare.log"
fi
for role in verifier bundlepub audit-reader admin; do
	[[ $(stat -c %a "$NATSDIR/$role.creds") == 600 ]] || tplocal_die "$NATSDIR/$role.creds: want mode 0600"
done
nats_tls=(--nats-ca "$NATSDIR/ca.pem")
# Each node's configuration: the shipped one, then the accounts and TLS.
cat "$root/deploy/nats/local.conf" "$NATSDIR/auth.conf" "$NATSDIR/tls.conf" >"$NATSDIR/server.conf"

# --- NATS cluster ------------------------------------------------------------
nats_urls=""
for i in "${TPLOCAL_NODES[@]}"; do
	nats_var=NATS${i}_PORT
	nats_urls+="${nats_urls:+,}nats://$TPLOCAL_HOST:${!nats_var}"
done
for i in "${TPLOCAL_NODES[@]}"; do
	routes=""
	for j in "${TPLOCAL_NODES[@]}"; do
		[[ $j == "$i" ]] && continue
		route_var=ROUTE${j}_PORT
		routes+="${routes:+,}\"nats-route://$TPLOCAL_HOST:${!route_var}\""
	done
	nats_var=NATS${i}_PORT route_var=ROUTE${i}_PORT mon_var=MONITOR${i}_PORT
	mkdir -p "$DIR/data/nats-$i"
	tplocal_start "nats-$i" env \
		TP_NATS_NAME="local-nats-$i" \
		TP_NATS_CLIENT="$TPLOCAL_HOST:${!nats_var}" \
		TP_NATS_MONITOR="$TPLOCAL_HOST:${!mon_var}" \
		TP_NATS_CLUSTER="$TPLOCAL_HOST:${!route_var}" \
		TP_NATS_ROUTES="[$routes]" \
		TP_NATS_STORE="$DIR/data/nats-$i" \
		"$BIN/nats-server" -c "$NATSDIR/server.conf"
done

deadline=$((SECONDS + timeout_s))

# wait_http NAME URL [ANY]: poll URL until it answers 200 (with ANY, any
# HTTP status), failing early when NAME's process group has exited.
wait_http() {
	local name=$1 url=$2 any=${3:-} code pid
	pid=$(<"$PIDS/$name.pid")
	while :; do
		code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$url" || true)
		if [[ $code == 200 || (-n $any && $code != 000) ]]; then
			return 0
		fi
		tplocal_group_alive "$pid" || tplocal_die "$name exited; see $LOGS/$name.log"
		# A node waits for bundles as long as it takes: say so if their
		# publisher is gone.
		if [[ -e $PIDS/bundlepub.pid ]] && ! tplocal_group_alive "$(<"$PIDS/bundlepub.pid")"; then
			tplocal_die "bundlepub exited; see $LOGS/bundlepub.log"
		fi
		((SECONDS < deadline)) || tplocal_die "$name: $url not ready after ${timeout_s}s (last status $code)"
		sleep 0.2
	done
}

# /healthz is 200 once the node's JetStream is up and the cluster has a
# meta leader: the ledger bucket can then be created with three replicas.
for i in "${TPLOCAL_NODES[@]}"; do
	mon_var=MONITOR${i}_PORT
	wait_http "nats-$i" "http://$TPLOCAL_HOST:${!mon_var}/healthz"
done
tplocal_log "NATS cluster up: $nats_urls"

# The streams, created and locked by admin, R3. Retried: right after the
# cluster forms the JetStream meta leader may not answer yet. The audit
# stream's size is the default, which fits local.conf's max_file_store.
until "$BIN/tpnats" setup --nats-url "$nats_urls" --nats-creds "$NATSDIR/admin.creds" "${nats_tls[@]}" \
	--ledger-replicas 3 --bundle-replicas 3 --audit-replicas 3 \
	--timeout 10s >>"$LOGS/tpnats-setup.log" 2>&1; do
	((SECONDS < deadline)) || tplocal_die "tpnats setup kept failing; see $LOGS/tpnats-setup.log"
	sleep 0.5
done

# --- demo upstream -------------------------------------------------------------
# It verifies the backend assertion of orders.get with the fleet's JWKS,
# served the same by every node (docs/BACKEND-JWT.md).
demoapi_args=(--listen "$TPLOCAL_HOST:$APP_PORT")
first_v_var=VERIFIER${TPLOCAL_NODES[0]}_PORT
if [[ $("$BIN/demoapi" --help 2>&1 || true) == *-jwks-url* ]]; then
	demoapi_args+=(--jwks-url "http://$TPLOCAL_HOST:${!first_v_var}/_tp/jwks.json")
fi
tplocal_start demoapi "$BIN/demoapi" "${demoapi_args[@]}"

# --- bundlepub -------------------------------------------------------------------
# The bundle bucket exists (tpnats setup, R3): bundlepub, as its role, only
# writes it.
pub_flags=(--nats-creds "$NATSDIR/bundlepub.creds" "${nats_tls[@]}")
if [[ $bundles_mode == nats ]]; then
	# Publish once first, retrying: right after the cluster forms, the
	# bundle bucket's stream may have no leader yet ("no responders"), and
	# publish exits on that. Once this has put both documents, the
	# long-running publish below finds identical bytes and only adds beacons.
	until "$BIN/bundlepub" publish "${pub_flags[@]}" \
		--nats-url "$nats_urls" \
		--trust-material "$KEYS/trust-material.json" \
		--policy-bundle "$KEYS/policy-bundle.json" \
		--bundle-public-key "$KEYS/bundle.pub" >>"$LOGS/bundlepub.log" 2>&1; do
		((SECONDS < deadline)) || tplocal_die "bundlepub publish kept failing; see $LOGS/bundlepub.log"
		sleep 0.5
	done
	tplocal_start bundlepub "$BIN/bundlepub" publish "${pub_flags[@]}" \
		--nats-url "$nats_urls" \
		--trust-material "$KEYS/trust-material.json" \
		--policy-bundle "$KEYS/policy-bundle.json" \
		--bundle-public-key "$KEYS/bundle.pub" \
		--beacon-key "$KEYS/beacon.key" \
		--watch
fi

# --- verifierd nodes --------------------------------------------------------------
for i in "${TPLOCAL_NODES[@]}"; do
	v_var=VERIFIER${i}_PORT
	args=(
		--listen "$TPLOCAL_HOST:${!v_var}"
		--node-id "local-$i"
		--data-dir "$DIR/data/verifierd-$i"
		--nats-url "$nats_urls"
		--nats-creds "$NATSDIR/verifier.creds"
		"${nats_tls[@]}"
		--ledger-replicas 3
		--upstream "http://$TPLOCAL_HOST:$APP_PORT"
		--trusted-proxies "127.0.0.1/32,::1/128"
		--bundle-public-key "$KEYS/bundle.pub"
	)
	if [[ $verifierd_help == *-audit-key* ]]; then
		args+=(--audit-key "$KEYS/audit-local-$i.key")
	fi
	# Each node signs backend assertions with its own key; every node lists
	# all the fleet's public keys, so each serves the same JWKS. The key
	# sits in a directory of its own (--assertion-key-dir), which the node
	# re-reads on each trust material and on SIGHUP: rotating it is a move
	# into the directory and two trust materials, never a restart
	# (docs/BACKEND-JWT.md).
	if [[ -e $KEYS/assertion-local-$i.key ]]; then
		fleet_pubs=""
		for j in "${TPLOCAL_NODES[@]}"; do
			fleet_pubs+="${fleet_pubs:+,}$KEYS/assertion-local-$j.pub"
		done
		if [[ $verifierd_help == *-assertion-key-dir* ]]; then
			keydir="$DIR/data/verifierd-$i/assertion-keys"
			mkdir -p "$keydir"
			chmod 700 "$keydir"
			install -m 600 "$KEYS/assertion-local-$i.key" "$keydir/assertion-local-$i.key"
			args+=(--assertion-key-dir "$keydir")
		else
			args+=(--assertion-key "$KEYS/assertion-local-$i.key")
		fi
		args+=(--assertion-issuer "https://verifiers.demo.tpcluster"
			--assertion-public-key "$fleet_pubs")
	fi
	# The audit stream as durable as the ledger, where this verifierd has one.
	if [[ $verifierd_help == *-audit-replicas* ]]; then
		args+=(--audit-replicas 3)
	fi
	if [[ $bundles_mode == nats ]]; then
		args+=(--beacon-public-key "$KEYS/beacon.pub")
		if [[ $verifierd_help == *-bundle-replicas* ]]; then
			args+=(--bundle-replicas 3)
		fi
	else
		# File mode: every node reads the same signed files; the demo's
		# routes are offline-ok, so the files' age never makes them stale.
		args+=(--trust-material "$KEYS/trust-material.json" --policy-bundle "$KEYS/policy-bundle.json")
	fi
	mkdir -p "$DIR/data/verifierd-$i"
	tplocal_start "verifierd-$i" "$BIN/verifierd" "${args[@]}"
done

# --- nginx -------------------------------------------------------------------------
# The shipped auth_request config, with its upstreams and listener pointed
# at this cluster. Each replacement must happen once: if the shipped file
# changes shape, fail here rather than run something else.
NGX=$DIR/nginx
mkdir -p "$NGX/tmp"
shipped=$root/deploy/nginx/tpcluster-auth-request.conf
verifier_servers=""
for i in "${TPLOCAL_NODES[@]}"; do
	v_var=VERIFIER${i}_PORT
	# GNU sed turns \n in the replacement into a newline.
	verifier_servers+="${verifier_servers:+\\n    }server $TPLOCAL_HOST:${!v_var};"
done
for want in 'server 127.0.0.1:8081;' 'server 127.0.0.1:9000;' 'listen 127.0.0.1:8080;'; do
	[[ $(grep -cF -- "$want" "$shipped") == 1 ]] || tplocal_die "$shipped: expected exactly one '$want'"
done
sed -e "s|server 127.0.0.1:8081;|${verifier_servers}|" \
	-e "s|server 127.0.0.1:9000;|server $TPLOCAL_HOST:$APP_PORT;|" \
	-e "s|listen 127.0.0.1:8080;|listen $TPLOCAL_HOST:$GATEWAY_PORT;|" \
	"$shipped" >"$NGX/tpcluster-auth-request.conf"
# The shipped proxy-mode config, the same way.
shipped_proxy=$root/deploy/nginx/tpcluster-proxy-mode.conf
for want in 'server 127.0.0.1:8081;' 'listen 127.0.0.1:8082;'; do
	[[ $(grep -cF -- "$want" "$shipped_proxy") == 1 ]] || tplocal_die "$shipped_proxy: expected exactly one '$want'"
done
sed -e "s|server 127.0.0.1:8081;|${verifier_servers}|" \
	-e "s|listen 127.0.0.1:8082;|listen $TPLOCAL_HOST:$PROXY_GATEWAY_PORT;|" \
	"$shipped_proxy" >"$NGX/tpcluster-proxy-mode.conf"

user_line=""
if [[ $(id -u) == 0 ]]; then
	# Workers would run as nobody and could not reach the 0700 state dir.
	user_line="user root;"
fi
cat >"$NGX/nginx.conf" <<EOF
# Generated by deploy/local/up.sh; edits are lost on the next up.
$user_line
worker_processes 1;
pid $NGX/nginx.pid;
error_log $LOGS/nginx-error.log warn;
events { worker_connections 1024; }
http {
    access_log $LOGS/nginx-access.log;
    client_body_temp_path $NGX/tmp/body;
    proxy_temp_path $NGX/tmp/proxy;
    fastcgi_temp_path $NGX/tmp/fastcgi;
    uwsgi_temp_path $NGX/tmp/uwsgi;
    scgi_temp_path $NGX/tmp/scgi;

    # Listener 1: auth_request to /_tp/check on the nodes, round robin
    # (deploy/nginx/tpcluster-auth-request.conf).
    include $NGX/tpcluster-auth-request.conf;

    # Listener 2: the nodes' proxy mode, round robin
    # (deploy/nginx/tpcluster-proxy-mode.conf). Use it where the body must
    # be bound: nginx sends no body to an auth subrequest.
    include $NGX/tpcluster-proxy-mode.conf;
}
EOF
"$NGINX" -t -q -p "$NGX" -c "$NGX/nginx.conf" -e "$LOGS/nginx-error.log" >>"$LOGS/nginx.log" 2>&1 ||
	tplocal_die "nginx config test failed; see $LOGS/nginx.log"
tplocal_start nginx "$NGINX" -p "$NGX" -c "$NGX/nginx.conf" -e "$LOGS/nginx-error.log" -g "daemon off;"

# --- wait ------------------------------------------------------------------------------
for i in "${TPLOCAL_NODES[@]}"; do
	v_var=VERIFIER${i}_PORT
	wait_http "verifierd-$i" "http://$TPLOCAL_HOST:${!v_var}/_tp/readyz"
done
wait_http demoapi "http://$TPLOCAL_HOST:$APP_PORT/" any
wait_http nginx "http://$TPLOCAL_HOST:$GATEWAY_PORT/" any
wait_http nginx "http://$TPLOCAL_HOST:$PROXY_GATEWAY_PORT/" any

# What a test or a load generator needs, in a form a shell can source.
{
	echo "TPLOCAL_DIR=$DIR"
	echo "TPLOCAL_BUNDLES=$bundles_mode"
	echo "TPLOCAL_GATEWAY_URL=http://$TPLOCAL_HOST:$GATEWAY_PORT"
	echo "TPLOCAL_PROXY_GATEWAY_URL=http://$TPLOCAL_HOST:$PROXY_GATEWAY_PORT"
	echo "TPLOCAL_APP_URL=http://$TPLOCAL_HOST:$APP_PORT"
	v_urls=""
	for i in "${TPLOCAL_NODES[@]}"; do
		v_var=VERIFIER${i}_PORT
		v_urls+="${v_urls:+,}http://$TPLOCAL_HOST:${!v_var}"
	done
	echo "TPLOCAL_VERIFIER_URLS=$v_urls"
	echo "TPLOCAL_NATS_URLS=$nats_urls"
	echo "TPLOCAL_NATS_DIR=$NATSDIR"
	echo "TPLOCAL_CALLER_KEY=$KEYS/caller.key"
	echo "TPLOCAL_BIN=$BIN"
	echo "TPLOCAL_KEYS=$KEYS"
} >"$DIR/env"

status_line="Bundles: every node reads $KEYS/{trust-material,policy-bundle}.json (file mode)"
if [[ $bundles_mode == nats ]]; then
	status_line="What every node holds:               $BIN/bundlepub status --nats-url $nats_urls --nats-creds $NATSDIR/bundlepub.creds --nats-ca $NATSDIR/ca.pem"
fi

ok=1
gw=http://$TPLOCAL_HOST:$GATEWAY_PORT
pgw=http://$TPLOCAL_HOST:$PROXY_GATEWAY_PORT
cat <<EOF
tpcluster is up in $DIR (bundles: $bundles_mode mode)
  gateway, nginx auth_request:   $gw
  gateway, nginx -> proxy mode:  $pgw
  verifierd nodes:               ${v_urls//,/ }
  NATS (TLS, one user per role):  $nats_urls
  NATS credentials:              $NATSDIR/{verifier,bundlepub,audit-reader,admin}.creds, CA $NATSDIR/ca.pem
  logs: $LOGS   PIDs: $PIDS   settings: $DIR/env

A signed GET through nginx, then the same request again (200, then 409 jti_replay):
  $BIN/tpcurl --key $KEYS/caller.key --route-id orders.get --repeat 2 --url $gw/v1/orders/ord_42

A POST whose body is bound, through the proxy-mode gateway:
  $BIN/tpcurl --key $KEYS/caller.key --route-id orders.create -X POST -d '{"order_id":"ord_42"}' -H 'Content-Type: application/json' --url $pgw/v1/orders

No passport (401 passport_missing):  curl -si $gw/v1/orders/ord_42
Audit trail whole and signed by the fleet (docs/AUDIT.md), as the audit-reader role:
  $BIN/tpaudit verify --nats-url $nats_urls --nats-creds $NATSDIR/audit-reader.creds --nats-ca $NATSDIR/ca.pem --bundle-public-key $KEYS/bundle.pub --trust-material $KEYS/trust-material.json
  $BIN/tpaudit tail --nats-url $nats_urls --nats-creds $NATSDIR/audit-reader.creds --nats-ca $NATSDIR/ca.pem
$status_line
Stop everything:                     $here/down.sh --dir $DIR
EOF
