#!/usr/bin/env bash
# The fleet against the ceiling in one run: the bare claim+complete SQL, then
# `jobfleet supervisor --burst --workers 2` draining 100k noop jobs (timed from start to exit),
# three times each, alternating. Uses (and empties) a scratch database `jobfleet_bench` on the
# embedded cluster. Until `jobfleet bench` lands.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
base=$($BIN/jobfleet db url)
$BIN/python - "$base" <<'PY'
import sys, psycopg
with psycopg.connect(sys.argv[1], autocommit=True) as c:
    if not c.execute("SELECT 1 FROM pg_database WHERE datname = 'jobfleet_bench'").fetchone():
        c.execute("CREATE DATABASE jobfleet_bench")
PY
export JOBFLEET_DATABASE_URL=${base/\/jobfleet\?//jobfleet_bench?}
$BIN/jobfleet migrate >/dev/null
jsonl=$(mktemp)
for _ in $(seq 100000); do echo null; done > "$jsonl"
for _ in 1 2 3; do
  $BIN/python scripts/measure_ceiling.py 100000 bare | grep bare
  $BIN/python -c "
import os, psycopg
with psycopg.connect(os.environ['JOBFLEET_DATABASE_URL'], autocommit=True) as c:
    c.execute('TRUNCATE jobs, job_attempt_log, nodes RESTART IDENTITY CASCADE')
    c.execute('VACUUM ANALYZE jobs')"
  $BIN/jobfleet enqueue noop --from-jsonl "$jsonl" >/dev/null
  start=$(date +%s.%N)
  $BIN/jobfleet supervisor --burst --workers 2 >/dev/null 2>&1
  end=$(date +%s.%N)
  $BIN/python -c "e = $end - $start; print(f'supervisor: 100000 jobs in {e:.2f}s = {100000 / e:,.0f} jobs/s')"
done
rm -f "$jsonl"
