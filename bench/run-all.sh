#!/usr/bin/env bash
# Runs every benchmark of BENCHMARKS.md and prints the figures with the machine's load beside
# them. Takes a while (the 1,000,000-submission indicator runs dominate); set SUBMISSIONS to a
# smaller number for a quicker pass, and PG to another PostgreSQL server URL.
#   bash bench/run-all.sh            # everything, SQLite and PostgreSQL
#   SUBMISSIONS=100000 DURATION=10 bash bench/run-all.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PG="${PG:-postgres://postgres@127.0.0.1:5432}"
SUBMISSIONS="${SUBMISSIONS:-1000000}"
DURATION="${DURATION:-20}"
DATA_DIR="${DATA_DIR:-${TMPDIR:-/tmp}}"

say() { echo; echo "== $* ($(date -u +%H:%M:%SZ), loadavg $(cut -d' ' -f1-3 /proc/loadavg))"; }

say "build (release)"
cargo build --release -p fieldtally -p fieldtally-bench --bins

say "machine limits"
target/release/disklimits --dir "$DATA_DIR" --seconds 5 --postgres "$PG"

say "load generator, SQLite"
target/release/loadgen --devices 1,8,64,500 --duration "$DURATION"

say "load generator, SQLite: rate as the database grows (64 devices, 10 rounds)"
target/release/loadgen --scenarios submit --devices 64 --duration "$DURATION" --rounds 10

say "load generator, PostgreSQL"
target/release/loadgen --database-url "$PG" --devices 1,8,64,500 --duration "$DURATION"

say "in-process hot paths (criterion)"
cargo bench -p fieldtally-bench --bench hot_paths

say "indicators at $SUBMISSIONS submissions, SQLite"
cargo bench --bench indicators -- --submissions "$SUBMISSIONS"

say "indicators at $SUBMISSIONS submissions, PostgreSQL"
psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS fieldtally_bench_indicators" -c "CREATE DATABASE fieldtally_bench_indicators"
cargo bench --bench indicators -- --submissions "$SUBMISSIONS" --database-url "$PG/fieldtally_bench_indicators"
psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS fieldtally_bench_indicators"
