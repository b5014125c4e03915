#!/usr/bin/env bash
# Memory and status of `lambdarec dev` under a long flood.
#   internal/bench/devflood/dev-flood.sh LAMBDAREC_BINARY TAG [SECONDS=120] [RATE=50000]
# Runs `LAMBDAREC_BINARY dev` on private ports (DEVFLOOD_HTTP_PORT 18680,
# DEVFLOOD_KAFKA_PORT 18692, DEVFLOOD_PPROF_PORT 18681), floods it with
# `LAMBDAREC_BINARY generate --rate RATE` for SECONDS and prints every ~5 s:
# dev's RSS (VmRSS), Go heap in use (go_memstats_heap_inuse_bytes), the size
# of the embedded broker's data dir, and /v1/status: the state, the reason
# codes (counted) and the lag of the archive and the speed layer. Writes
# OUT/TAG.samples, OUT/TAG.dev.log, OUT/TAG.gen.log and a heap profile
# OUT/TAG.heap.pprof (OUT: DEVFLOOD_OUT, default /tmp). The environment passes
# through to dev (LAMBDAREC_BROKER_RETENTION_BYTES=4194304 makes the embedded
# broker's bound bite within a minute).
set -uo pipefail
bin=$1; tag=$2; secs=${3:-120}; rate=${4:-50000}
http=127.0.0.1:${DEVFLOOD_HTTP_PORT:-18680}
kafka=127.0.0.1:${DEVFLOOD_KAFKA_PORT:-18692}
pp=127.0.0.1:${DEVFLOOD_PPROF_PORT:-18681}
out=${DEVFLOOD_OUT:-/tmp}/$tag
dir=$(mktemp -d)
"$bin" dev --data-dir "$dir/data" --http "$http" --kafka "$kafka" --rate 50 --batch-every 20s --pprof "$pp" >"$out.dev.log" 2>&1 &
dev=$!
cleanup() {
	[[ -n ${gen:-} ]] && kill -9 "$gen" 2>/dev/null
	kill -INT "$dev" 2>/dev/null && wait "$dev" 2>/dev/null
	rm -rf "$dir"
}
trap cleanup EXIT
for _ in $(seq 180); do
	curl -fsS "http://$http/v1/recommendations?user_id=devflood&k=3" 2>/dev/null | grep -q '"item"' && break
	sleep 1
done
echo "ready $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)" | tee "$out.samples"
LAMBDAREC_KAFKA_BROKERS=$kafka "$bin" generate --rate "$rate" --duration "${secs}s" >"$out.gen.log" 2>&1 &
gen=$!
t0=$(date +%s)
# A generator held back by a full broker may still be delivering at the end: stop sampling at SECONDS + 30.
while kill -0 "$gen" 2>/dev/null && (( $(date +%s) - t0 < secs + 30 )); do
	sleep 5
	rss=$(awk '/VmRSS/{print int($2/1024)}' "/proc/$dev/status")
	heap=$(curl -fsS --max-time 10 "http://$http/metrics" 2>/dev/null | awk '/^go_memstats_heap_inuse_bytes/{print int($2/1048576)}')
	du=$(du -sm "$dir/data/kafka" 2>/dev/null | cut -f1)
	st=$(curl -fsS --max-time 30 "http://$http/v1/status" 2>/dev/null | tr -d '\n ')
	state=$(echo "$st" | grep -o '"state":"[a-z]*"' | head -1 | cut -d'"' -f4)
	codes=$(echo "$st" | grep -o '"code":"[a-z_]*"' | cut -d'"' -f4 | sort | uniq -c | tr -s ' \n' ' ')
	lag=$(echo "$st" | grep -o '"layer":"\(speed\|archive\)","last_update":"[^"]*","lag_records":[0-9-]*' | sed 's/"last_update":"[^"]*",//;s/"layer"://;s/"lag_records"://' | tr '\n' ' ')
	errs=$(echo "$st" | grep -o '"error":"[^"]*"' | head -3 | tr '\n' ' ')
	echo "t=$(( $(date +%s) - t0 )) rss_mb=$rss heap_mb=$heap kafka_dir_mb=$du status=$state codes=[$codes] lag=[$lag] $errs" | tee -a "$out.samples"
done
curl -fsS --max-time 30 -o "$out.heap.pprof" "http://$pp/debug/pprof/heap" || true
grep -a "generated" "$out.gen.log" | tee -a "$out.samples"
echo "archive partitions stopped (log gaps): $(grep -a -c 'partition stopped' "$out.dev.log")" | tee -a "$out.samples"
echo "end load $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out.samples"
