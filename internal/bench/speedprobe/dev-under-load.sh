#!/usr/bin/env bash
# Runs `lambdarec dev` on private ports, floods it with `lambdarec generate
# --rate RATE` and, while the flood runs, measures the POST -> speed answer
# latency of single events with speedprobe for DURATION.
#   internal/bench/speedprobe/dev-under-load.sh [RATE=50000] [DURATION=60s]
set -euo pipefail
rate=${1:-50000}
dur=${2:-60s}
http=127.0.0.1:${SPEEDPROBE_HTTP_PORT:-18480}
kafka=127.0.0.1:${SPEEDPROBE_KAFKA_PORT:-18492}
dir=$(mktemp -d)
cleanup() {
	[[ -n ${gen:-} ]] && kill "$gen" 2>/dev/null || true
	[[ -n ${dev:-} ]] && kill -INT "$dev" 2>/dev/null && wait "$dev" 2>/dev/null || true
	rm -rf "$dir"
}
trap cleanup EXIT
cd "$(dirname "$0")/../../.."
go build -o "$dir/lambdarec" ./cmd/lambdarec
go build -o "$dir/speedprobe" ./internal/bench/speedprobe
"$dir/lambdarec" dev --data-dir "$dir/data" --http "$http" --kafka "$kafka" --rate 50 --batch-every 20s >"$dir/dev.log" 2>&1 &
dev=$!
# Wait until a batch answers with popular items.
for _ in $(seq 180); do
	if curl -fsS "http://$http/v1/recommendations?user_id=speedprobe-nobody&k=3" 2>/dev/null | grep -q '"item"'; then break; fi
	sleep 1
done
echo "dev ready at $(date -u +%T); load: $(cut -d' ' -f1-3 /proc/loadavg)"
LAMBDAREC_KAFKA_BROKERS=$kafka "$dir/lambdarec" generate --rate "$rate" --duration "$(( ${dur%s} + 15 ))s" >"$dir/gen.log" 2>&1 &
gen=$!
sleep 5
"$dir/speedprobe" --base "http://$http" --duration "$dur"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
wait "$gen" || true
tail -1 "$dir/gen.log"
curl -fsS "http://$http/metrics" 2>/dev/null | grep -E '^lambdarec_speed_(records|view_writes)_total|^lambdarec_status_layer_lag_records\{layer="speed"' || true
