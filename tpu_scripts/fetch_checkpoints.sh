#!/usr/bin/env bash
# fetch_checkpoints.sh: copy a run's WORKDIR (checkpoints/, metrics.jsonl, tensorboard/) to this machine
# (step 5 of tpu_scripts/README.md).
#
# Usage: [VAR=value ...] tpu_scripts/fetch_checkpoints.sh [--help]
#
# Settings (environment variables):
#   WORKDIR   the run's WORKDIR as given to train.sh                                       (required)
#             gs://...  copied with `gcloud storage rsync -r` (no TPU needed, also after delete.sh)
#             else      a path on the workers (relative to REMOTE_DIR unless absolute), copied from
#                       worker 0 with `gcloud compute tpus tpu-vm scp --worker=0 --recurse`
#   DEST      local destination directory                (default: runs/<last part of WORKDIR>)
#   ONLY_METRICS=1   copy metrics.jsonl and tensorboard/ only, not the checkpoints
#   TPU_NAME, ZONE, PROJECT, REMOTE_DIR   shared settings (worker path), see tpu_scripts/README.md
#
# Examples:
#   WORKDIR=gs://my-bucket/trajsv/v4-32 tpu_scripts/fetch_checkpoints.sh
#   WORKDIR=runs/v5e DEST=runs/from_tpu tpu_scripts/fetch_checkpoints.sh

set -euo pipefail
# shellcheck source=tpu_scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
handle_help "$@"
need_gcloud
need_var WORKDIR "export WORKDIR=<the run's WORKDIR given to train.sh, gs://... or a path on the workers>"
src=${WORKDIR%/}
DEST=${DEST:-runs/$(basename "$src")}
mkdir -p "$DEST"

if [[ $src == gs://* ]]; then
  if [[ ${ONLY_METRICS:-0} == 1 ]]; then
    run "$GCLOUD" storage cp "$src/metrics.jsonl" "$DEST/"
    run "$GCLOUD" storage rsync -r "$src/tensorboard" "$DEST/tensorboard"
  else
    run "$GCLOUD" storage rsync -r "$src" "$DEST"
  fi
else
  need_zone
  if [[ $src != /* ]]; then src=$REMOTE_DIR/$src; fi
  if [[ ${ONLY_METRICS:-0} == 1 ]]; then
    sources=("$TPU_NAME:$src/metrics.jsonl" "$TPU_NAME:$src/tensorboard")
  else
    sources=("$TPU_NAME:$src")
  fi
  # scp copies a directory as itself into the target (and refuses "dir/."): land in a scratch directory.
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  run "$GCLOUD" compute tpus tpu-vm scp "${sources[@]}" "$tmp/" "${GC_FLAGS[@]}" --worker=0 --recurse
  if [[ ${ONLY_METRICS:-0} == 1 ]]; then cp -R "$tmp/." "$DEST/"; else cp -R "$tmp/$(basename "$src")/." "$DEST/"; fi
fi
echo "copied to $DEST (tensorboard --logdir $DEST/tensorboard)" >&2
