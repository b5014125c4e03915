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
if [[ -n ${SPEEDPROBE_LAMBDAREC:-} ]]; then cp "$SPEEDPROBE_LAMBDAREC" "$dir/lambdarec"; else go build -o "$dir/lambdarec" ./cmd/lambdarec; fi
go build -o "$dir/speedprobe" ./internal/bench/speedprobe
"$dir/lambdarec" dev --data-dir "$dir/data" --http "$http" --kafka "$kafka" --rate 50 --batch-every 20s >"$dir/dev.log" 2>&1 &
dev=$!
# Wait until a batch answers with popular items.
for _ in $(seq 180); do
	if curl -fsS "http://$http/v1/recommendations?user_id=speedprobe-nobody&k=3" 2>/dev/null | grep -q '"item"'; then break; fi
	sleep 1
done
echo "dev ready at $(date -u +%T); load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "without the flood (10s):"
"$dir/speedprobe" --base "http://$http" --duration 10s || echo "speedprobe failed"
echo "with lambdarec generate --rate $rate:"
LAMBDAREC_KAFKA_BROKERS=$kafka "$dir/lambdarec" generate --rate "$rate" --duration "$(( ${dur%s} + 15 ))s" >"$dir/gen.log" 2>&1 &
gen=$!
sleep 5
"$dir/speedprobe" --base "http://$http" --duration "$dur" || echo "speedprobe failed"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
curl -fsS "http://$http/metrics" 2>/dev/null | grep -E '^lambdarec_speed_(records_total|lag_records_total|view_writes_total|events_per_second)' || true
wait "$gen" || true
grep -a "generated" "$dir/gen.log" || tail -3 "$dir/gen.log"
