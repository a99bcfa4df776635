#!/usr/bin/env bash
# One entry point that sets up .venv on first use and then runs a job:
#   bash scripts/run.sh main    the offline default main job (see README)
#   bash scripts/run.sh test    the test suite
#   bash scripts/run.sh bench [pooling|multisize|precision|serving|detection] [args]
#                               one benchmark (default pooling), printing JSON
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
# TensorFlow's BFC allocator on the CPU reuses freed blocks instead of returning
# them to the OS; large pooled outputs then skip page faults (2-3x faster here).
export TF_CPU_ALLOCATOR_USE_BFC=${TF_CPU_ALLOCATOR_USE_BFC:-true}
job=${1:-main}
shift || true
case "$job" in
  main) exec .venv/bin/python -m recipes.main "$@" ;;
  test) exec .venv/bin/python -m pytest -q "$@" ;;
  bench)
    name=pooling
    case "${1:-}" in pooling|multisize|precision|serving|detection) name=$1; shift ;; esac
    exec .venv/bin/python -m "benchmarks.$name" "$@" ;;
  *) echo "usage: bash scripts/run.sh main|test|bench [args]" >&2; exit 2 ;;
esac
