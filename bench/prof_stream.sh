#!/usr/bin/env bash
# prof_stream.sh LABEL SERVER: one 5k fan-out run of SERVER (bench.py stream, 30 s), `perf record
# -F 999 -g` for 15 s in its middle, and its utime/stime over those 15 s. Hold the build lock.
label=$1; S=$2
out=${PROF_OUT:-/tmp/pulse-prof}; mkdir -p $out
cd "$(dirname "$0")/.."
python3 bench/bench.py stream --clients 5000 --symbols 10 --duration 30 \
  --server $S --loadgen ${LOADGEN:-target/release/pulse-loadgen} --wait-idle 0 --label $label > $out/$label.json 2>$out/$label.err &
B=$!
for i in $(seq 1 120); do sleep 1; pgrep -f "^${LOADGEN:-target/release/pulse-loadgen}" >/dev/null && break; done
sleep 12
P=$(pgrep -f "^$S --db" | head -1)
read ut0 st0 < <(awk '{print $14, $15}' /proc/$P/stat)
perf record -F 999 -g -p $P -o $out/$label.data -- sleep 15 > /dev/null 2>&1
read ut1 st1 < <(awk '{print $14, $15}' /proc/$P/stat)
echo "$label pid $P utime_ticks $((ut1-ut0)) stime_ticks $((st1-st0))" >> $out/ustime.txt
wait $B
