#!/usr/bin/env bash
# Benchmark: 32 replicas at once on an empty database, directly, against one run alone and against
# 32 floor programs at once (bench/replicas.py says more). MTR_BIN picks the binary.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
BIN="${MTR_BIN:-$ROOT/build/migrate-then-run}"
[ -x "$BIN" ] || make -s -C "$ROOT" build/migrate-then-run >&2
BENCH_NAME="$(basename "$0")" PYTHONPATH="$ROOT/bench" exec /usr/bin/python3 "$ROOT/bench/replicas.py" "$BIN"
