#!/usr/bin/env bash
# One entry point that sets up .venv on first use and then runs a job:
#   bash scripts/run.sh main    the offline default main job (see README)
#   bash scripts/run.sh test    the test suite (TensorFlow; tests/backends on JAX and PyTorch too)
#   bash scripts/run.sh bench [pooling|multisize|precision|serving|detection|proposals] [args]
#                               one benchmark (default pooling), printing JSON
#   bash scripts/run.sh package the wheel, installed into fresh venvs under /tmp (one
#                               without TensorFlow) and run from outside the checkout
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
  test)
    # With arguments: pytest on them alone. Without: the whole suite on TensorFlow,
    # then tests/backends (ops, layers, models) on JAX and PyTorch.
    if [ $# -gt 0 ]; then exec .venv/bin/python -m pytest -q "$@"; fi
    .venv/bin/python -m pytest -q
    for backend in jax torch; do
      echo "== tests/backends on KERAS_BACKEND=$backend"
      KERAS_BACKEND=$backend .venv/bin/python -m pytest -q tests/backends
    done ;;
  bench)
    name=pooling
    case "${1:-}" in pooling|multisize|precision|serving|detection|proposals) name=$1; shift ;; esac
    exec .venv/bin/python -m "benchmarks.$name" "$@" ;;
  package) exec bash tests/packaging/check_wheel.sh ;;
  *) echo "usage: bash scripts/run.sh main|test|bench|package [args]" >&2; exit 2 ;;
esac
