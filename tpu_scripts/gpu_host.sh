#!/usr/bin/env bash
# gpu_host.sh: the same training on ONE Linux host with NVIDIA GPUs (no gcloud, no TPU).
#
# Usage: [VAR=value ...] tpu_scripts/gpu_host.sh COMMAND [--config.KEY=VALUE ...]
#   setup          make the venv, pip install -e . and pip install -U "jax[JAX_CUDA]" (the JAX
#                  install guide's NVIDIA command: CUDA, cuDNN and NCCL come as pip wheels)
#   train          one process drives every local GPU: the mesh spans all devices, no --distributed
#   train-per-gpu  one process per GPU (CUDA_VISIBLE_DEVICES=I), joined with --distributed
#                  --coordinator localhost:PORT --num-processes N --process-id I; logs per process
#   --help         this text
#
# Settings (environment variables):
#   VENV       virtual environment                                   (default: REPO/.venv)
#   PYTHON     Python 3.10 to 3.12 that makes the venv                   (default: python3)
#   JAX_CUDA   cuda13 (NVIDIA driver >= 580) or cuda12 (driver >= 525)
#              (default: chosen from the driver version nvidia-smi reports)
#   CONFIG     config file                                       (default: configs/paper.py)
#   DATA_DIR   dataset directory, passed as --config.data_dir    (default: the config's own)
#   WORKDIR    checkpoints, metrics.jsonl, tensorboard/                  (default: runs/gpu)
#   NUM_GPUS   train-per-gpu: number of processes     (default: the GPUs nvidia-smi lists)
#   PORT       train-per-gpu: coordinator port on localhost                  (default: 12355)
#   LOG_DIR    train-per-gpu: process-I.log files                    (default: runs/gpu-logs)
#
# Examples:
#   tpu_scripts/gpu_host.sh setup
#   .venv/bin/trajsv demo --out runs/demo
#   DATA_DIR=runs/demo/tfrecords tpu_scripts/gpu_host.sh train --config.batch_size=256
#   DATA_DIR=runs/demo/tfrecords tpu_scripts/gpu_host.sh train-per-gpu

set -euo pipefail
# shellcheck source=tpu_scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
handle_help "${1:-}"
command=${1:-}
[[ -n $command ]] || die "missing COMMAND: setup, train or train-per-gpu (see --help)"
shift
VENV=${VENV:-$REPO_ROOT/.venv}
PYTHON=${PYTHON:-python3}
CONFIG=${CONFIG:-configs/paper.py}
WORKDIR=${WORKDIR:-runs/gpu}
cd "$REPO_ROOT"

need_nvidia_smi() {
  command -v nvidia-smi >/dev/null 2>&1 || die "nvidia-smi not found: install the NVIDIA driver first${1:+ $1}"
}

train_cmd() {
  cmd=("$VENV/bin/trajsv" train --config "$CONFIG" --workdir "$WORKDIR")
  if [[ -n ${DATA_DIR:-} ]]; then cmd+=("--config.data_dir=$DATA_DIR"); fi
  [[ -x ${cmd[0]} ]] || die "${cmd[0]} not found: run tpu_scripts/gpu_host.sh setup first (or set VENV)"
}

case "$command" in
setup)
  if [[ -z ${JAX_CUDA:-} ]]; then
    need_nvidia_smi "(or set JAX_CUDA=cuda12|cuda13)"
    driver=$(nvidia-smi --query-gpu=driver_version --format=csv,noheader | head -n 1)
    if ((${driver%%.*} >= 580)); then JAX_CUDA=cuda13; else JAX_CUDA=cuda12; fi
    echo "NVIDIA driver $driver: jax[$JAX_CUDA]" >&2
  fi
  [[ $JAX_CUDA == cuda12 || $JAX_CUDA == cuda13 ]] || die "JAX_CUDA must be cuda12 or cuda13, got '$JAX_CUDA'"
  if [[ ! -x $VENV/bin/python ]]; then run "$PYTHON" -m venv "$VENV"; fi
  run "$VENV/bin/pip" install -U pip
  run "$VENV/bin/pip" install -e .
  run "$VENV/bin/pip" install -U "jax[$JAX_CUDA]"
  run "$VENV/bin/python" -c "import jax; print(jax.device_count(), 'devices:', jax.devices())"
  ;;
train)
  train_cmd
  run "${cmd[@]}" "$@"
  ;;
train-per-gpu)
  train_cmd
  if [[ -z ${NUM_GPUS:-} ]]; then
    need_nvidia_smi "(or set NUM_GPUS)"
    NUM_GPUS=$(nvidia-smi -L | grep -c '^GPU')
  fi
  [[ $NUM_GPUS =~ ^[1-9][0-9]*$ ]] || die "NUM_GPUS must be a positive integer, got '$NUM_GPUS'"
  LOG_DIR=${LOG_DIR:-runs/gpu-logs}
  mkdir -p "$LOG_DIR"
  pids=()
  for ((i = 0; i < NUM_GPUS; i++)); do
    args=(--distributed --coordinator "localhost:${PORT:-12355}" --num-processes "$NUM_GPUS" --process-id "$i" "$@")
    echo "+ CUDA_VISIBLE_DEVICES=$i ${cmd[*]} ${args[*]} > $LOG_DIR/process-$i.log" >&2
    # A plain command (not a function) so that $! is the trainer itself, which `kill` below reaches.
    CUDA_VISIBLE_DEVICES=$i "${cmd[@]}" "${args[@]}" >"$LOG_DIR/process-$i.log" 2>&1 &
    pids+=("$!")
  done
  trap 'kill "${pids[@]}" 2>/dev/null || true' INT TERM
  echo "$NUM_GPUS processes started; follow: tail -f $LOG_DIR/process-0.log" >&2
  # When one process fails the others would wait for it forever: stop them all.
  for ((i = 0; i < NUM_GPUS; i++)); do
    if ! wait -n; then
      kill "${pids[@]}" 2>/dev/null || true
      die "a process failed: stopped the others; see $LOG_DIR/process-*.log"
    fi
  done
  ;;
*) die "unknown COMMAND '$command': use setup, train or train-per-gpu (see --help)" ;;
esac
