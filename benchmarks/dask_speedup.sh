#!/usr/bin/env bash
# Wall time of one `stgmtl payoff` plan in one process against a local Dask cluster of
# 2 worker processes (1 thread each) on this machine; see docs/guide/dask.md.
# Usage: STGMTL_DATA=/path/to/data flock /tmp/stgmtl-heavy.lock bash benchmarks/dask_speedup.sh
set -eu
PY=${PY:-python}
OUT=${OUT:-benchmarks/results/dask_speedup}
PORT=${PORT:-8786}
PLAN="payoff --quick --epochs 1 --signals label --no-report -q"
rm -rf "$OUT" && mkdir -p "$OUT"
t() { start=$(date +%s.%N); "$@" > /dev/null; end=$(date +%s.%N); echo "$end - $start" | bc; }
load0=$(cut -d' ' -f1-3 /proc/loadavg)
one1=$(t $PY -m stgmtl $PLAN --threads 1 --out "$OUT/one-t1")
one=$(t $PY -m stgmtl $PLAN --out "$OUT/one")
$PY -m distributed.cli.dask_scheduler --host 127.0.0.1 --port "$PORT" --no-dashboard \
    > "$OUT/scheduler.log" 2>&1 &
SCHED=$!
$PY -m distributed.cli.dask_worker "tcp://127.0.0.1:$PORT" --nworkers 2 --nthreads 1 \
    --host 127.0.0.1 --no-dashboard > "$OUT/workers.log" 2>&1 &
WORK=$!
trap 'kill $WORK $SCHED 2>/dev/null || true' EXIT
sleep 8  # workers start and register
dask=$(t $PY -m stgmtl $PLAN --dask "tcp://127.0.0.1:$PORT" --out "$OUT/dask")
cached=$(t $PY -m stgmtl $PLAN --dask "tcp://127.0.0.1:$PORT" --out "$OUT/dask")
{
  echo "plan: stgmtl $PLAN"
  echo "load average before: $load0; after: $(cut -d' ' -f1-3 /proc/loadavg) (2 cores)"
  echo "one process (torch default threads): $one s"
  echo "one process (--threads 1): $one1 s"
  echo "Dask (dask scheduler + dask worker --nworkers 2 --nthreads 1): $dask s"
  echo "rerun on Dask (every run cached): $cached s"
  echo "speed-up over one process: $(echo "scale=2; $one / $dask" | bc)"
  echo "speed-up over one process, 1 thread: $(echo "scale=2; $one1 / $dask" | bc)"
} | tee "$OUT/summary.txt"
