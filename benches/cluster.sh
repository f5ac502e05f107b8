#!/usr/bin/env bash
# The im-load `cluster` scenario against N im-server processes on this
# machine: one fresh PostgreSQL database (created here, dropped on exit),
# the nodes joined by the chosen fan-out, everything on 127.0.0.1.
#
#   benches/cluster.sh [--nodes N] [--backend local|redis|kafka] [-- IM-LOAD CLUSTER OPTIONS]
#
#   benches/cluster.sh --nodes 1 --backend local -- --pairs 20 --duration 10
#   benches/cluster.sh --nodes 3 --backend redis -- --pairs 20 --same-node-pairs 21 --duration 10
#   benches/cluster.sh --nodes 3 --backend redis -- --duration 10 --rate 100 --window 1
#   benches/cluster.sh --nodes 3 --backend kafka -- --duration 10
#
# Builds the release binaries once (into $CARGO_TARGET_DIR or target/), prints
# im-load's JSON report, and exits with im-load's status (1: verification
# failed). On exit, however it ends, it stops every process it started and
# drops its database.
#
# Needs: PostgreSQL (IM_BENCH_PG, default postgres://postgres@127.0.0.1:5432,
# trust auth, database `test`), psql and curl; for `redis` the Redis at
# IM_BENCH_REDIS (default redis://127.0.0.1:6379; the run uses a channel of
# its own); for `kafka` the `tansu` broker on PATH
# (`cargo install tansu --locked --features dynostore`), started here on a
# free port with in-memory storage.
set -euo pipefail
cd "$(dirname "$0")/.."

NODES=3
BACKEND=redis
while [[ $# -gt 0 ]]; do
  case "$1" in
    --nodes) NODES=$2; shift 2 ;;
    --backend) BACKEND=$2; shift 2 ;;
    --) shift; break ;;
    -h|--help) sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$BACKEND" in
  local) [[ $NODES == 1 ]] || { echo "backend local joins no nodes: use --nodes 1" >&2; exit 2; } ;;
  redis|kafka) ;;
  *) echo "--backend must be local, redis or kafka" >&2; exit 2 ;;
esac
[[ $NODES =~ ^[1-9][0-9]*$ ]] || { echo "--nodes must be a positive number" >&2; exit 2; }
if [[ $BACKEND == kafka ]] && ! command -v tansu >/dev/null; then
  echo "tansu is missing: the kafka backend needs a broker (cargo install tansu --locked --features dynostore)" >&2
  exit 2
fi

PG=${IM_BENCH_PG:-postgres://postgres@127.0.0.1:5432}
REDIS=${IM_BENCH_REDIS:-redis://127.0.0.1:6379}
RUN=im_bench_$$
TARGET_DIR=${CARGO_TARGET_DIR:-target}
LOGS=

pids=()
tansu_pid=
load_pid=
db_created=
cleanup() {
  local status=$?
  trap - EXIT INT TERM
  [[ -n $load_pid ]] && kill -TERM "$load_pid" 2>/dev/null || true
  [[ ${#pids[@]} -gt 0 ]] && kill -TERM "${pids[@]}" 2>/dev/null || true
  for pid in "${pids[@]}"; do
    for _ in $(seq 1 120); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if [[ -n $tansu_pid ]]; then
    kill -TERM "$tansu_pid" 2>/dev/null || true
    wait "$tansu_pid" 2>/dev/null || true
  fi
  if [[ -n $db_created ]]; then
    psql "$PG/test" -q -c "DROP DATABASE IF EXISTS $RUN WITH (FORCE)" >/dev/null || true
  fi
  if [[ $BACKEND == redis ]] && command -v redis-cli >/dev/null; then
    redis-cli -u "$REDIS" --scan --pattern "$RUN:*" | xargs -r redis-cli -u "$REDIS" del >/dev/null || true
  fi
  if [[ $status -ne 0 ]]; then
    for log in "${LOGS:-/nonexistent}"/*.log; do
      [[ -s $log ]] && { echo "--- $log (last lines)" >&2; tail -n 20 "$log" >&2; }
    done
  fi
  [[ -n $LOGS ]] && rm -rf "$LOGS"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
LOGS=$(mktemp -d "/tmp/$RUN.XXXX")

cargo build --release -q -p im-server -p im-benches --bin im-server --bin im-load

# A port nothing on 127.0.0.1 listens on (checked, then used at once).
free_port() {
  local port
  while :; do
    port=$((20000 + RANDOM % 20000))
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { echo "$port"; return; }
  done
}

# Waits until $1 (a command) succeeds, for at most 30 s, while pid $2 lives.
wait_for() {
  for _ in $(seq 1 300); do
    eval "$1" >/dev/null 2>&1 && return 0
    kill -0 "$2" 2>/dev/null || { echo "$3 exited while starting" >&2; return 1; }
    sleep 0.1
  done
  echo "$3 not ready after 30 s" >&2
  return 1
}

psql "$PG/test" -q -c "CREATE DATABASE $RUN" >/dev/null
db_created=1

fanout=(IM__FANOUT__BACKEND="$BACKEND")
case "$BACKEND" in
  redis) fanout+=(IM__FANOUT__URL="$REDIS" IM__FANOUT__CHANNEL="$RUN") ;;
  kafka)
    kport=$(free_port)
    tansu broker --listener-url "tcp://127.0.0.1:$kport" --advertised-listener-url "tcp://127.0.0.1:$kport" \
      --storage-engine memory://tansu/ >"$LOGS/tansu.log" 2>&1 &
    tansu_pid=$!
    wait_for "(exec 3<>/dev/tcp/127.0.0.1/$kport)" "$tansu_pid" tansu
    fanout+=(IM__FANOUT__BROKERS="127.0.0.1:$kport" IM__FANOUT__TOPIC="$RUN") ;;
esac

addrs=()
for n in $(seq 1 "$NODES"); do
  port=$(free_port)
  env IM__SERVER__LISTEN="127.0.0.1:$port" IM__GRPC__LISTEN=127.0.0.1:0 IM__STORE__URL="$PG/$RUN" "${fanout[@]}" \
    IM__AUTH__ARGON2_M_COST=256 IM__AUTH__ARGON2_T_COST=1 \
    IM__LIMITS__REQUESTS_PER_SECOND=1000000 IM__LIMITS__REQUEST_BURST=1000000 \
    IM__LIMITS__MAX_SESSIONS_PER_USER=64 IM__LIMITS__MAX_GROUP_MEMBERS=20000 \
    IM__LOG__LEVEL=warn \
    "$TARGET_DIR/release/im-server" >"$LOGS/node$n.log" 2>&1 &
  pids+=($!)
  addrs+=("127.0.0.1:$port")
  # One at a time: a port found free is taken before the next is chosen.
  wait_for "curl -fs http://127.0.0.1:$port/readyz" "$!" "node $n"
done
echo "$NODES node(s), backend $BACKEND, database $RUN: ${addrs[*]} (pids ${pids[*]})" >&2

nodes=$(IFS=,; echo "${addrs[*]}")
server_pids=$(IFS=,; echo "${pids[*]}")
# In the background, so that a signal to this script ends the run at once.
"$TARGET_DIR/release/im-load" cluster --nodes "$nodes" --server-pids "$server_pids" "$@" &
load_pid=$!
wait "$load_pid"
