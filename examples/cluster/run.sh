#!/usr/bin/env bash
# A three-node im cluster on one machine: one PostgreSQL database, one broker
# (Redis, or Kafka), three im-server processes (ports 8081-8083) joined by its
# fan-out, and an echo bot connected to each node.
#
#   examples/cluster/run.sh            # Redis; Ctrl-C stops everything
#   examples/cluster/run.sh kafka      # Kafka: a tansu broker on 127.0.0.1:9092
#                                      # (started here unless IM_CLUSTER_KAFKA names one)
#
# Then chat through any node, e.g. in two terminals:
#   cargo run -p im-examples --example cli-chat -- ws://127.0.0.1:8081/v1/ws
#   cargo run -p im-examples --example cli-chat -- ws://127.0.0.1:8083/v1/ws
# and `/dm bot2` from either: the bot on node 2 answers through the cluster.
#
# Needs PostgreSQL (IM_CLUSTER_PG, default postgres://postgres@127.0.0.1:5432/test)
# and Redis (IM_CLUSTER_REDIS, default redis://127.0.0.1:6379) or, for Kafka,
# `tansu` (cargo install tansu --locked --features dynostore) or a broker of
# your own (IM_CLUSTER_KAFKA=host:port).
set -euo pipefail
cd "$(dirname "$0")/../.."
BACKEND=${1:-redis}
PG=${IM_CLUSTER_PG:-postgres://postgres@127.0.0.1:5432/test}
REDIS=${IM_CLUSTER_REDIS:-redis://127.0.0.1:6379}
KAFKA=${IM_CLUSTER_KAFKA:-}
SCHEMA=im_cluster_example
case "$BACKEND" in
  redis) FANOUT=(IM__FANOUT__BACKEND=redis IM__FANOUT__URL="$REDIS" IM__FANOUT__CHANNEL=im-cluster-example) ;;
  kafka) FANOUT=(IM__FANOUT__BACKEND=kafka IM__FANOUT__BROKERS="${KAFKA:-127.0.0.1:9092}" IM__FANOUT__TOPIC=im-cluster-example) ;;
  *) echo "usage: $0 [redis|kafka]" >&2; exit 2 ;;
esac

cargo build -q -p im-server -p im-examples --example bot
psql "$PG" -q -c "CREATE SCHEMA IF NOT EXISTS $SCHEMA" >/dev/null
STORE="$PG?options=-csearch_path%3D$SCHEMA"

pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

if [ "$BACKEND" = kafka ] && [ -z "$KAFKA" ]; then
  tansu broker --listener-url tcp://127.0.0.1:9092 --advertised-listener-url tcp://127.0.0.1:9092 \
    --storage-engine memory://tansu/ > /tmp/im-cluster-kafka.log 2>&1 &
  pids+=($!)
  for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/9092) 2>/dev/null && break; sleep 0.1; done
  echo "Kafka broker (tansu) on 127.0.0.1:9092 (log /tmp/im-cluster-kafka.log)"
fi

for n in 1 2 3; do
  env IM__SERVER__LISTEN=127.0.0.1:808$n IM__GRPC__LISTEN=127.0.0.1:5005$n IM__STORE__URL="$STORE" "${FANOUT[@]}" \
    target/debug/im-server > "/tmp/im-cluster-node$n.log" 2>&1 &
  pids+=($!)
done
for n in 1 2 3; do
  for _ in $(seq 1 100); do
    curl -fs "http://127.0.0.1:808$n/readyz" >/dev/null 2>&1 && break
    sleep 0.1
  done
  echo "node $n ready on ws://127.0.0.1:808$n/v1/ws (log /tmp/im-cluster-node$n.log)"
done
for n in 1 2 3; do
  target/debug/examples/bot "ws://127.0.0.1:808$n/v1/ws" "bot$n" password123 > "/tmp/im-cluster-bot$n.log" 2>&1 &
  pids+=($!)
done
echo "bots bot1, bot2, bot3 connected to nodes 1, 2, 3; Ctrl-C stops the cluster"
wait
