#!/bin/bash
# Train the diffusion models with Horovod on one workstation: one worker per GPU.
#
#   jobs/local/horovodrun.sh [--dry-run] [--set SECTION.KEY=VALUE]... [--rescale-workers] CONFIG
#   NP=2 jobs/local/horovodrun.sh configs/default.yaml      # 2 workers (CPU: Horovod over Gloo)
#
# NP defaults to the number of GPUs nvidia-smi lists (1 without a GPU); each worker pins the GPU
# of its local rank. Runs with --resume, so the same command continues an interrupted run.
# Activates LHCO_VENV (default <repository>/.venv; empty: use the current python), loads no
# modules (set LHCO_MODULES to load some). Output also in <run_dir>/logs/train-local-<time>.log.
set -eu
USAGE="usage: horovodrun.sh [--dry-run] [--set SECTION.KEY=VALUE]... [--rescale-workers] CONFIG   (env: NP=workers)"
LHCO_MODULES=${LHCO_MODULES:-}
# shellcheck source=../perlmutter/common.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/../perlmutter/common.sh"

lhco_parse "" "rescale-workers" "$@"
if [[ -z ${NP:-} ]]; then
    NP=$( (nvidia-smi -L 2>/dev/null || true) | grep -c '^GPU' || true)
    ((NP > 0)) || { NP=1; echo "no GPU listed by nvidia-smi: one worker (set NP=2 for two CPU workers)"; }
fi
lhco_require_integer NP "$NP"
((NP > 0)) || lhco_usage_error "NP must be at least 1"

lhco_environment
lhco_read_config
lhco_run train horovodrun -np "$NP" -H "localhost:$NP" \
    python -m lhco_diffusion.train --config "$CONFIG" "${SET_ARGS[@]}" --resume \
    ${OPT[rescale-workers]:+--rescale-workers}
