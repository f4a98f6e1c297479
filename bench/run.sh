#!/usr/bin/env bash
# Runs every benchmark of issue #6 (see bench/BENCHMARKS.md).
#
# 1. Builds the benchmark runner, and the handler as it ships: through
#    scripts/package.sh (the deploy zip, static musl binary) when the
#    repository has it, else `cargo build --release -p handler`. Release
#    builds use LTO: minutes the first time, reused after.
# 2. Installs the Python baseline's SDKs from PyPI into bench/.venv when
#    bench/python/requirements.txt changed.
# 3. Measures both, prints a table, rewrites the generated part of
#    bench/BENCHMARKS.md.
#
#   bash bench/run.sh              # full run, a few minutes
#   bash bench/run.sh --quick      # fewer repetitions
#   bash bench/run.sh --only cold,plan,throughput,rotate,package --no-write
#   BENCH_HANDLER=path bash bench/run.sh --handler-only   # another binary
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -p bench
if [ -f scripts/package.sh ]; then
    bash scripts/package.sh
else
    cargo build --release -p handler
fi

venv=bench/.venv
stamp="$venv/.requirements"
if ! cmp -s bench/python/requirements.txt "$stamp" 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r bench/python/requirements.txt
    cp bench/python/requirements.txt "$stamp"
fi

exec target/release/bench "$@"
