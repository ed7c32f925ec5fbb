#!/usr/bin/env bash
# prof_vs_zero.sh PULSE LOADGEN: what Pulse spends beyond the zero-work writer (issue 25 point 3):
# 5k fan-out, Pulse (bench/prof_stream.sh: perf record + utime/stime)
# and the zero-work writer (utime/stime over the same 15 s), alternating, two runs each; then
# bench/prof_categories.py on the Pulse runs. Hold the build lock. Output in $PROF_OUT.
set -u
cd "$(dirname "$0")/.."
export LOADGEN=${2:-target/release/pulse-loadgen}
OUT=${PROF_OUT:-/tmp/pulse-prof-zero}; mkdir -p $OUT; export PROF_OUT=$OUT
P=${1:-target/release/pulse}
zero_run() {
  label=$1
  python3 bench/bench.py stream --clients 5000 --symbols 10 --duration 30 --server-kind zero \
     --loadgen $LOADGEN --wait-idle 0 --label $label > $OUT/$label.json 2>$OUT/$label.err &
  B=$!
  for i in $(seq 1 120); do sleep 1; pgrep -f "^$LOADGEN" >/dev/null && break; done
  sleep 12
  Z=$(pgrep -f "zero-writer" | head -1)
  read ut0 st0 < <(awk '{print $14, $15}' /proc/$Z/stat)
  sleep 15
  read ut1 st1 < <(awk '{print $14, $15}' /proc/$Z/stat)
  echo "$label pid $Z utime_ticks $((ut1-ut0)) stime_ticks $((st1-st0))" >> $OUT/ustime.txt
  wait $B
}
for r in 1 2; do
  bash bench/prof_stream.sh pulse$r $P
  zero_run zero$r
done
cat $OUT/ustime.txt
python3 bench/prof_categories.py pulse1,pulse2 2>&1 | tail -20 || true
