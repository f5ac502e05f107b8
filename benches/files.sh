#!/usr/bin/env bash
# Upload and download throughput of files over HTTP, with the server's CPU
# time per GiB. Starts a release im-server (SQLite, files in a temporary
# directory), uploads a file of SIZE_MIB (default 1024) random bytes with curl
# (`-X POST --upload-file`: streamed, one POST) and downloads it (to /dev/null, and to a file
# whose SHA-256 is checked). Runs each RUNS times (default 3) and prints one
# line per transfer: MiB/s (curl's average speed) and the server's user+system
# CPU seconds per GiB (from /proc/PID/stat around the transfer).
#
#   cargo build --release -p im-server && benches/files.sh
#   SIZE_MIB=256 RUNS=5 benches/files.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release/im-server}
SIZE_MIB=${SIZE_MIB:-1024}
RUNS=${RUNS:-3}
PORT=${PORT:-18480}
work=$(mktemp -d)
trap 'kill $server 2>/dev/null || true; rm -rf "$work"' EXIT

IM__SERVER__LISTEN=127.0.0.1:$PORT IM__STORE__URL="sqlite://$work/im.sqlite3" \
IM__FILES__DIR="$work/files" IM__FILES__MAX_FILE_BYTES=$((4 << 30)) IM__LOG__LEVEL=warn \
  "$BIN" &
server=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break; sleep 0.1; done

token=$(curl -sf -X POST "http://127.0.0.1:$PORT/v1/auth/register" \
  -d '{"username":"bench","password":"password123"}' | sed 's/.*"token":"\([^"]*\)".*/\1/')
head -c $((SIZE_MIB << 20)) /dev/urandom > "$work/in.bin"
want=$(sha256sum "$work/in.bin" | cut -d' ' -f1)
ticks=$(getconf CLK_TCK)
cpu() { awk '{print $14 ":" $15}' "/proc/$server/stat"; }   # user:system ticks
report() { # what, bytes/s from curl, cpu ticks before, after
  awk -v what="$1" -v speed="$2" -v t0="$3" -v t1="$4" -v hz="$ticks" -v mib="$SIZE_MIB" 'BEGIN {
    split(t0, a, ":"); split(t1, b, ":"); gib = mib / 1024
    u = (b[1] - a[1]) / hz / gib; s = (b[2] - a[2]) / hz / gib
    printf "%-9s %8.1f MiB/s   server CPU %.2f s/GiB (user %.2f, system %.2f)\n", what, speed / 1048576, u + s, u, s }'
}

for run in $(seq "$RUNS"); do
  c0=$(cpu)
  out=$(curl -sf -H "Authorization: Bearer $token" -H "X-File-Name: bench.bin" \
    -X POST --upload-file "$work/in.bin" -w '\n%{speed_upload}' "http://127.0.0.1:$PORT/v1/files")
  c1=$(cpu)
  id=$(echo "$out" | head -1 | sed 's/.*"id":"\([0-9a-f]*\)".*/\1/')
  echo "$out" | head -1 | grep -q "\"sha256\":\"$want\"" || { echo "upload hash mismatch"; exit 1; }
  report upload "$(echo "$out" | tail -1)" "$c0" "$c1"
  c0=$(cpu)
  speed=$(curl -sf -H "Authorization: Bearer $token" -o /dev/null -w '%{speed_download}' "http://127.0.0.1:$PORT/v1/files/$id")
  c1=$(cpu)
  report download "$speed" "$c0" "$c1"
  # Each run's file is deleted from disk so that runs do not pile up dirty pages.
  if [ "$run" = 1 ]; then
    curl -sf -H "Authorization: Bearer $token" -o "$work/out.bin" "http://127.0.0.1:$PORT/v1/files/$id"
    [ "$(sha256sum "$work/out.bin" | cut -d' ' -f1)" = "$want" ] || { echo "download hash mismatch"; exit 1; }
    rm "$work/out.bin"
  fi
  rm -f "$work/files/${id:0:2}/$id"
  sync
done
echo "server peak resident memory: $(awk '/VmHWM/ {print $2, $3}' "/proc/$server/status")"
