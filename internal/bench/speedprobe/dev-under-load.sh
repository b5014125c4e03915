#!/usr/bin/env bash
# Runs `lambdarec dev` on private ports, floods it with `lambdarec generate
# --rate RATE` and, while the flood runs, measures the POST -> speed answer
# latency of single events with speedprobe for DURATION, and reports the
# rate each component reached meanwhile (archive, speed layer, generator),
# dev's CPU and the /v1/status lag of the archive and the speed layer, and
# how the speed answers were scored: speedprobe's count of as_of.speed.scored
# ("read": scored by the speed layer when read; "view": the stored view) and
# dev's lambdarec_serve_read_scores_total during the probes (every read of a
# live session: scored at read, or a fallback to the stored view by reason).
#   internal/bench/speedprobe/dev-under-load.sh [RATE=50000] [DURATION=60s]
# SPEEDPROBE_LAMBDAREC=<binary> uses that lambdarec instead of building one;
# SPEEDPROBE_LOGS=<dir> keeps dev's and the generator's logs (and the loop trace) there;
# SPEEDPROBE_CPUPROFILE=<file> writes a 30 s CPU profile of dev taken during
# the flood (dev --pprof), for `go tool pprof`;
# SPEEDPROBE_LOOPTRACE=1 traces the speed layer's loop (dev --speed-trace)
# and reports where its time went during the probes (speedprobe --loop-trace).
set -euo pipefail
rate=${1:-50000}
dur=${2:-60s}
http=127.0.0.1:${SPEEDPROBE_HTTP_PORT:-18480}
kafka=127.0.0.1:${SPEEDPROBE_KAFKA_PORT:-18492}
dir=$(mktemp -d)
cleanup() {
	[[ -n ${gen:-} ]] && kill "$gen" 2>/dev/null || true
	[[ -n ${dev:-} ]] && kill -INT "$dev" 2>/dev/null && wait "$dev" 2>/dev/null || true
	[[ -n ${SPEEDPROBE_LOGS:-} ]] && mkdir -p "$SPEEDPROBE_LOGS" && cp "$dir"/*.log "$dir"/*.trace "$SPEEDPROBE_LOGS"/ 2>/dev/null
	rm -rf "$dir"
}
trap cleanup EXIT
cd "$(dirname "$0")/../../.."
if [[ -n ${SPEEDPROBE_LAMBDAREC:-} ]]; then cp "$SPEEDPROBE_LAMBDAREC" "$dir/lambdarec"; else go build -o "$dir/lambdarec" ./cmd/lambdarec; fi
go build -o "$dir/speedprobe" ./internal/bench/speedprobe
pprof=()
[[ -n ${SPEEDPROBE_CPUPROFILE:-} ]] && pprof=(--pprof "127.0.0.1:${SPEEDPROBE_PPROF_PORT:-18481}")
[[ -n ${SPEEDPROBE_LOOPTRACE:-} ]] && pprof+=(--speed-trace "$dir/loop.trace")
"$dir/lambdarec" dev --data-dir "$dir/data" --http "$http" --kafka "$kafka" --rate 50 --batch-every 20s "${pprof[@]}" >"$dir/dev.log" 2>&1 &
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
LAMBDAREC_KAFKA_BROKERS=$kafka /usr/bin/time -f "generator CPU: %U s user, %S s sys in %e s" -o "$dir/gen.time" "$dir/lambdarec" generate --rate "$rate" --duration "$(( ${dur%s} + 15 ))s" >"$dir/gen.log" 2>&1 &
gen=$!
sleep 5
# What each component reached during the probes: records/s of the archive
# and of the speed layer, views written/s, dev's CPU (cores), and the reads
# scored at read, fallen back to the stored view (not ready, error, timeout)
# and without inputs (no stored explanation), and the failed scorings of views
# stored without items (answered without speed items), from /metrics.
snap() {
	curl -fsS --max-time 30 "http://$http/metrics" 2>/dev/null | awk -v t="$(date +%s.%N)" '
		/^lambdarec_archive_records_total/ {a += $2}
		/^lambdarec_speed_records_total/ {s += $2}
		/^lambdarec_speed_view_writes_total/ {v += $2}
		/^process_cpu_seconds_total/ {c += $2}
		/^lambdarec_serve_read_scores_total\{result="read"\}/ {r += $2}
		/^lambdarec_serve_read_scores_total\{result="fallback_not_ready"\}/ {fn += $2}
		/^lambdarec_serve_read_scores_total\{result="fallback_error"\}/ {fe += $2}
		/^lambdarec_serve_read_scores_total\{result="fallback_timeout"\}/ {ft += $2}
		/^lambdarec_serve_read_scores_total\{result="no_inputs"\}/ {ni += $2}
		/^lambdarec_serve_read_scores_total\{result="fallback_no_items"\}/ {nn += $2}
		END {printf "%s %d %d %d %f %d %d %d %d %d %d\n", t, a, s, v, c, r, fn, fe, ft, ni, nn}'
}
m0=$(snap) || true
if [[ -n ${SPEEDPROBE_CPUPROFILE:-} ]]; then
	curl -fsS --max-time 60 -o "$SPEEDPROBE_CPUPROFILE" "http://127.0.0.1:${SPEEDPROBE_PPROF_PORT:-18481}/debug/pprof/profile?seconds=30" &
	prof=$!
fi
t0=$(date +%s%3N)
"$dir/speedprobe" --base "http://$http" --duration "$dur" || echo "speedprobe failed"
t1=$(date +%s%3N)
m1=$(snap) || true
[[ -n ${prof:-} ]] && { wait "$prof" || echo "cpu profile failed"; }
if ! kill -0 "$dev" 2>/dev/null; then
	echo "dev is gone; the end of its log:"
	tail -20 "$dir/dev.log"
fi
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
if [[ -n ${SPEEDPROBE_LOOPTRACE:-} ]]; then
	sleep 1 # the trace is buffered: lines of the window may still be in dev
	"$dir/speedprobe" --loop-trace "$dir/loop.trace" --from "$t0" --to "$t1" || echo "loop trace summary failed"
fi
[[ -n $m0 && -n $m1 ]] && echo "$m0 $m1" | awk '{dt = $12 - $1; printf "during the probes (%.0fs): archive %.0f records/s, speed %.0f records/s, %.0f views/s, dev process CPU %.2f cores\n", dt, ($13-$2)/dt, ($14-$3)/dt, ($15-$4)/dt, ($16-$5)/dt
	printf "reads of live sessions (lambdarec_serve_read_scores_total): scored at read %d; stored view answered: not ready %d, error %d, timeout %d; no stored explanation %d; a view stored without items (speed.score_views: false) whose scoring failed, answered without speed items: %d\n", $17-$6, $18-$7, $19-$8, $20-$9, $21-$10, $22-$11}'
status=$(curl -fsS --max-time 30 "http://$http/v1/status" 2>/dev/null | tr -d '\n ') || true
echo "$status" | grep -o '"layer":"\(speed\|archive\)","last_update":"[^"]*","lag_records":[0-9-]*,"lag_seconds":[0-9.e+-]*' | sed 's/"last_update":"[^"]*",//' || true
echo "$status" | grep -o '"state":"[a-z]*"' | head -1 | sed 's/^/status: /' || true
echo "$status" | grep -o '"code":"[a-z_]*"' | sort | uniq -c | tr -s ' \n' ' ' | sed 's/^/faults:/;s/$/\n/' || true
wait "$gen" || true
grep -a "generated" "$dir/gen.log" || tail -3 "$dir/gen.log"
cat "$dir/gen.time" 2>/dev/null || true
