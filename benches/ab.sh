#!/usr/bin/env bash
# Two im-server binaries side by side (e.g. the release build of the commit
# before a change and of the change): the same im-load scenario against a
# fresh server of each (SQLite in a temporary directory), interleaved A, B,
# A, B..., ROUNDS times. Prints one line per run; exits 1 if a run's
# verification failed. Stops each server and removes its files.
#
#   benches/ab.sh --a OLD/im-server --b NEW/im-server [--rounds N] -- SCENARIO [IM-LOAD OPTIONS]
#
#   git worktree add /tmp/before HEAD~1 && (cd /tmp/before && cargo build --release -p im-server)
#   cargo build --release -p im-server -p im-benches
#   benches/ab.sh --a /tmp/before/target/release/im-server --b target/release/im-server \
#     --rounds 3 -- group --members 100 --senders 4 --duration 8
#
# im-load is this checkout's release build ($CARGO_TARGET_DIR or target/).
# Needs: curl, jq.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=3
A=
B=
while [[ $# -gt 0 ]]; do
  case "$1" in
    --a) A=$2; shift 2 ;;
    --b) B=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --) shift; break ;;
    -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
[[ -x $A && -x $B ]] || { echo "--a and --b must name im-server binaries" >&2; exit 2; }
[[ $# -gt 0 ]] || { echo "name an im-load scenario after -- (see --help)" >&2; exit 2; }
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || { echo "--rounds must be a positive number" >&2; exit 2; }
for tool in curl jq; do
  command -v "$tool" >/dev/null || { echo "$tool is missing" >&2; exit 2; }
done
LOAD=${CARGO_TARGET_DIR:-target}/release/im-load
[[ -x $LOAD ]] || { echo "build im-load first: cargo build --release -p im-benches" >&2; exit 2; }

DIR=
server_pid=
stop_server() {
  if [[ -n $server_pid ]]; then
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 1 120); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=
  fi
  [[ -n $DIR ]] && rm -rf "$DIR"
  DIR=
}
trap stop_server EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
  local port
  while :; do
    port=$((20000 + RANDOM % 20000))
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { echo "$port"; return; }
  done
}

# Starts `$1` on a fresh database; sets server_pid and port.
start_server() {
  DIR=$(mktemp -d /tmp/im_ab_bench.XXXX)
  port=$(free_port)
  local grpc
  grpc=$(free_port)
  env IM__SERVER__LISTEN="127.0.0.1:$port" IM__GRPC__LISTEN="127.0.0.1:$grpc" \
    IM__STORE__URL="sqlite://$DIR/im.sqlite3" IM__FILES__DIR="$DIR/files" \
    IM__AUTH__ARGON2_M_COST=256 IM__AUTH__ARGON2_T_COST=1 \
    IM__LIMITS__REQUESTS_PER_SECOND=1000000 IM__LIMITS__REQUEST_BURST=1000000 \
    IM__LIMITS__MAX_SESSIONS_PER_USER=64 IM__LIMITS__MAX_GROUP_MEMBERS=20000 \
    IM__LOG__LEVEL=warn \
    "$1" >"$DIR/server.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 1 300); do
    curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && return
    kill -0 "$server_pid" 2>/dev/null || { echo "$1 exited while starting" >&2; exit 1; }
    sleep 0.1
  done
  echo "$1 did not get ready" >&2
  exit 1
}

failed=0
printf "%-6s %-3s %10s %12s %9s %9s %9s %8s %9s %11s\n" round bin acked/s deliveries/s p50_ms p99_ms cpu_s wall_s conns/s bytes/conn
for round in $(seq 1 "$ROUNDS"); do
  for which in a b; do
    bin=$A
    [[ $which == b ]] && bin=$B
    start_server "$bin"
    report="$DIR/report.json"
    "$LOAD" --addr "127.0.0.1:$port" --server-pid "$server_pid" "$@" >"$report" || failed=1
    jq -r --arg round "$round" --arg which "$which" '[
        $round, $which,
        (.acked_per_sec | floor), (.deliveries_per_sec | floor),
        ((.latency.p50_us // 0) / 1000 * 100 | round / 100),
        ((.latency.p99_us // 0) / 1000 * 100 | round / 100),
        ((.server_cpu_secs // 0) * 100 | round / 100),
        (.wall_secs * 100 | round / 100),
        (.connects_per_sec | floor),
        ((.server_bytes_per_connection // 0) | floor)
      ] | @tsv' "$report" | awk -F'\t' '{ printf "%-6s %-3s %10s %12s %9s %9s %9s %8s %9s %11s\n", $1, $2, $3, $4, $5, $6, $7, $8, $9, $10 }'
    stop_server
  done
done
exit "$failed"
