#!/usr/bin/env bash
# Transports side by side: one im-server process (SQLite in a temporary
# directory) with its plain WebSocket listener and the listeners of the
# other transports, and the same im-load scenario run over each transport in
# turn, interleaved, ROUNDS times. Transports: plain (ws://), tls (wss://),
# grpc (grpc://); --via picks them (default: plain,tls).
#
#   benches/transports.sh [--rounds N] [--via T1,T2,...] -- SCENARIO [IM-LOAD SCENARIO OPTIONS]
#
#   benches/transports.sh --rounds 3 -- dm --pairs 50 --duration 8 --window 8            # flat out
#   benches/transports.sh --rounds 3 -- dm --pairs 50 --duration 8 --rate 5 --window 1   # 500 msg/s
#   benches/transports.sh --rounds 1 -- connect -n 5000 --hold 2                         # idle memory
#   benches/transports.sh --rounds 3 --via plain,grpc -- group --members 100 --senders 4 --duration 8
#
# Builds the release binaries once (into $CARGO_TARGET_DIR or target/), makes
# a private CA and a server certificate for 127.0.0.1 with openssl (ECDSA
# P-256), prints one line per run (transport, acked/s, deliveries/s,
# latency p50/p99, server CPU seconds and wall seconds, connections opened
# per second, server bytes per idle connection). Exits 1 if any run's verification failed. On exit, however
# it ends, it stops the server and removes its files.
#
# Needs: openssl, curl, jq.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=3
VIA=plain,tls
while [[ $# -gt 0 ]]; do
  case "$1" in
    --rounds) ROUNDS=$2; shift 2 ;;
    --via) VIA=$2; shift 2 ;;
    --) shift; break ;;
    -h|--help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
[[ $# -gt 0 ]] || { echo "name an im-load scenario after -- (see --help)" >&2; exit 2; }
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || { echo "--rounds must be a positive number" >&2; exit 2; }
IFS=, read -r -a VIAS <<<"$VIA"
for via in "${VIAS[@]}"; do
  [[ $via =~ ^(plain|tls|grpc)$ ]] || { echo "--via: unknown transport $via (plain, tls, grpc)" >&2; exit 2; }
done
for tool in openssl curl jq; do
  command -v "$tool" >/dev/null || { echo "$tool is missing" >&2; exit 2; }
done

TARGET_DIR=${CARGO_TARGET_DIR:-target}
DIR=$(mktemp -d /tmp/im_transports_bench.XXXX)
server_pid=
cleanup() {
  local status=$?
  trap - EXIT INT TERM
  if [[ -n $server_pid ]]; then
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 1 120); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  if [[ $status -ne 0 && -s $DIR/server.log ]]; then
    echo "--- server log (last lines)" >&2
    tail -n 20 "$DIR/server.log" >&2
  fi
  rm -rf "$DIR"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

cargo build --release -q -p im-server -p im-benches --bin im-server --bin im-load

# A private CA, and a certificate it signs for 127.0.0.1.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj "/CN=im bench CA" -keyout "$DIR/ca.key" -out "$DIR/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -subj "/CN=127.0.0.1" -keyout "$DIR/key.pem" -out "$DIR/server.csr" 2>/dev/null
printf "subjectAltName=IP:127.0.0.1\n" >"$DIR/san.ext"
openssl x509 -req -in "$DIR/server.csr" -CA "$DIR/ca.pem" -CAkey "$DIR/ca.key" -CAcreateserial \
  -days 2 -extfile "$DIR/san.ext" -out "$DIR/cert.pem" 2>/dev/null

# Ports nothing on 127.0.0.1 listens on (checked, then used at once).
free_port() {
  local port
  while :; do
    port=$((20000 + RANDOM % 20000))
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { echo "$port"; return; }
  done
}
plain=$(free_port)
secure=$(free_port)
[[ $plain != "$secure" ]] || secure=$((plain + 1))
grpc=$(free_port)
while [[ $grpc == "$plain" || $grpc == "$secure" ]]; do grpc=$(free_port); done

env IM__SERVER__LISTEN="127.0.0.1:$plain" IM__GRPC__LISTEN="127.0.0.1:$grpc" \
  IM__TLS__LISTEN="127.0.0.1:$secure" IM__TLS__CERT_FILE="$DIR/cert.pem" IM__TLS__KEY_FILE="$DIR/key.pem" \
  IM__STORE__URL="sqlite://$DIR/im.sqlite3" \
  IM__AUTH__ARGON2_M_COST=256 IM__AUTH__ARGON2_T_COST=1 \
  IM__LIMITS__REQUESTS_PER_SECOND=1000000 IM__LIMITS__REQUEST_BURST=1000000 \
  IM__LIMITS__MAX_SESSIONS_PER_USER=64 IM__LIMITS__MAX_GROUP_MEMBERS=20000 \
  IM__LOG__LEVEL=warn \
  "$TARGET_DIR/release/im-server" >"$DIR/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 300); do
  curl -fs "http://127.0.0.1:$plain/readyz" >/dev/null 2>&1 && break
  kill -0 "$server_pid" 2>/dev/null || { echo "im-server exited while starting" >&2; exit 1; }
  sleep 0.1
done
curl -fs --cacert "$DIR/ca.pem" "https://127.0.0.1:$secure/readyz" >/dev/null
echo "im-server $server_pid: plain 127.0.0.1:$plain, TLS 127.0.0.1:$secure, gRPC 127.0.0.1:$grpc; $ROUNDS round(s) of: $*" >&2

load=("$TARGET_DIR/release/im-load" --addr "127.0.0.1:$plain" --server-pid "$server_pid")
tls=(--tls-addr "127.0.0.1:$secure" --root-cert "$DIR/ca.pem")
grpc_args=(--grpc "127.0.0.1:$grpc")
failed=0
printf "%-6s %-6s %10s %12s %9s %9s %9s %8s %9s %11s\n" round via acked/s deliveries/s p50_ms p99_ms cpu_s wall_s conns/s bytes/conn
for round in $(seq 1 "$ROUNDS"); do
  for via in "${VIAS[@]}"; do
    extra=()
    [[ $via == tls ]] && extra=("${tls[@]}")
    [[ $via == grpc ]] && extra=("${grpc_args[@]}")
    report="$DIR/$via-$round.json"
    "${load[@]}" "${extra[@]}" "$@" >"$report" || failed=1
    jq -r --arg round "$round" --arg via "$via" '[
        $round, $via,
        (.acked_per_sec | floor), (.deliveries_per_sec | floor),
        ((.latency.p50_us // 0) / 1000 * 100 | round / 100),
        ((.latency.p99_us // 0) / 1000 * 100 | round / 100),
        ((.server_cpu_secs // 0) * 100 | round / 100),
        (.wall_secs * 100 | round / 100),
        (.connects_per_sec | floor),
        ((.server_bytes_per_connection // 0) | floor)
      ] | @tsv' "$report" | awk -F'\t' '{ printf "%-6s %-6s %10s %12s %9s %9s %9s %8s %9s %11s\n", $1, $2, $3, $4, $5, $6, $7, $8, $9, $10 }'
  done
done
exit "$failed"
