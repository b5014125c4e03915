#!/usr/bin/env bash
# Memory of `lambdarec broker` (in memory, no --data-dir, no consumer) under a flood.
#   internal/bench/devflood/broker-flood.sh LAMBDAREC_BINARY TAG [SECONDS=60] [RATE=50000]
# Runs the broker on 127.0.0.1:${DEVFLOOD_KAFKA_PORT:-18693} with GODEBUG=gctrace=1,
# floods it with `LAMBDAREC_BINARY generate --rate RATE` for SECONDS, prints
# its RSS every 5 s and, at the end, the live heap after each of its last 8
# garbage collections (MB). Writes OUT/TAG.samples and OUT/TAG.broker.log
# (OUT: DEVFLOOD_OUT, default /tmp). The environment passes through
# (LAMBDAREC_BROKER_RETENTION_BYTES=…).
set -uo pipefail
bin=$1; tag=$2; secs=${3:-60}; rate=${4:-50000}
kafka=127.0.0.1:${DEVFLOOD_KAFKA_PORT:-18693}
out=${DEVFLOOD_OUT:-/tmp}/$tag
GODEBUG=gctrace=1 LAMBDAREC_BROKER_ADDR=$kafka "$bin" broker >"$out.broker.log" 2>&1 &
br=$!
trap 'kill -9 $gen 2>/dev/null; kill -INT $br 2>/dev/null; wait $br 2>/dev/null' EXIT
sleep 2
echo "start $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)" | tee "$out.samples"
LAMBDAREC_KAFKA_BROKERS=$kafka "$bin" generate --rate "$rate" --duration "${secs}s" >"$out.gen.log" 2>&1 &
gen=$!
t0=$(date +%s)
while kill -0 "$gen" 2>/dev/null; do
	sleep 5
	echo "t=$(( $(date +%s) - t0 )) broker_rss_mb=$(awk '/VmRSS/{print int($2/1024)}' "/proc/$br/status")" | tee -a "$out.samples"
done
echo "live heap after the last GCs (MB): $(grep '^gc ' "$out.broker.log" | awk '{split($11, a, "->"); print a[3]}' | tail -8 | tr '\n' ' ')" | tee -a "$out.samples"
grep -a "generated" "$out.gen.log" | tee -a "$out.samples"
echo "end load $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out.samples"
