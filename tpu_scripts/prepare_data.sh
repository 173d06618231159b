#!/usr/bin/env bash
# prepare_data.sh: put the training data where every worker can read it (step 3 of tpu_scripts/README.md).
# Every host reads its own shards (files[process_index::process_count]), so each split needs at least
# as many shards as the slice has workers: this script checks it.
#
# Usage: [VAR=value ...] tpu_scripts/prepare_data.sh [workers|gcs] [--help]
#
#   workers (default)  run the data step on every worker into the same path under REMOTE_DIR. The
#                      step is deterministic, so every worker writes identical files; each worker
#                      prints a digest of them to compare.
#     SHARDS           shards per split                  (default: the worker count, at least 4)
#     RUN_DIR          run directory of `trajsv demo --data-only`, DATA_DIR is RUN_DIR/tfrecords
#                                                                    (default: runs/tpu_demo)
#     DATA_STEP        your own data step instead of the bundled demo match, run in REMOTE_DIR
#                      on every worker (the raw files must be there too), e.g.
#                      "trajsv ingest tracab meta_data=m.xml raw_data=t.dat --out st && trajsv tokenize st
#                       && trajsv dataset st --out data --shards 8"; then set DATA_DIR=data as well
#   gcs                copy a dataset directory made on this machine to Cloud Storage with
#                      `gcloud storage rsync -r`; train with DATA_DIR=DATA_GCS
#     LOCAL_DATA_DIR   local directory with dataset_info.json and the *.tfrecord shards
#     DATA_GCS         destination, gs://BUCKET/PATH
#   TPU_NAME, ZONE, PROJECT, REMOTE_DIR, WORKERS   shared settings, see tpu_scripts/README.md
#
# Examples:
#   tpu_scripts/prepare_data.sh                      # bundled match on every worker -> runs/tpu_demo/tfrecords
#   trajsv demo --data-only --out runs/demo --shards 8
#   LOCAL_DATA_DIR=runs/demo/tfrecords DATA_GCS=gs://my-bucket/trajsv/data tpu_scripts/prepare_data.sh gcs

set -euo pipefail
# shellcheck source=tpu_scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
handle_help "$@"
mode=${1:-workers}
[[ $mode == workers || $mode == gcs ]] || die "unknown mode '$mode': use 'workers' or 'gcs' (see --help)"
need_gcloud

# Shards per split of a local dataset directory, one "split count" line per split.
local_shards() {
  local f name
  for f in "$1"/*-00000-of-*.tfrecord; do
    [[ -e $f ]] || continue
    name=$(basename "$f" .tfrecord)
    echo "${name%%-00000-of-*} $((10#${name##*-of-}))"
  done
}

if [[ $mode == gcs ]]; then
  need_var LOCAL_DATA_DIR "export LOCAL_DATA_DIR=<directory written by 'trajsv dataset' or 'trajsv demo' (RUN/tfrecords)>"
  need_var DATA_GCS "export DATA_GCS=gs://BUCKET/PATH (where the workers will read the data)"
  [[ $DATA_GCS == gs://* ]] || die "DATA_GCS must start with gs://, got '$DATA_GCS'"
  [[ -f $LOCAL_DATA_DIR/dataset_info.json ]] || die "$LOCAL_DATA_DIR/dataset_info.json not found: not a trajsv dataset directory"
  if [[ -z ${WORKERS:-} ]]; then need_zone; fi
  workers=$(worker_count)
  shards=$(local_shards "$LOCAL_DATA_DIR")
  [[ -n $shards ]] || die "no *-00000-of-*.tfrecord shards in $LOCAL_DATA_DIR"
  while read -r split count; do
    ((count >= workers)) || die "split '$split' has $count shards for $workers workers: re-write it with 'trajsv dataset ... --shards $workers'"
  done <<<"$shards"
  run "$GCLOUD" storage rsync -r "$LOCAL_DATA_DIR" "${DATA_GCS%/}"
  echo "data in ${DATA_GCS%/}: next, DATA_DIR=${DATA_GCS%/} WORKDIR=gs://... tpu_scripts/train.sh" >&2
  exit 0
fi

need_zone
workers=$(worker_count)
SHARDS=${SHARDS:-$((workers > 4 ? workers : 4))}
[[ $SHARDS =~ ^[1-9][0-9]*$ ]] || die "SHARDS must be a positive integer, got '$SHARDS'"
((SHARDS >= workers)) || die "SHARDS=$SHARDS is fewer than the $workers workers: every host needs at least one shard per split"
if [[ -n ${DATA_STEP:-} ]]; then
  need_var DATA_DIR "export DATA_DIR=<directory, relative to REMOTE_DIR, that DATA_STEP writes the dataset to>"
  step=$DATA_STEP
else
  RUN_DIR=${RUN_DIR:-runs/tpu_demo}
  DATA_DIR=$RUN_DIR/tfrecords
  step="trajsv demo --data-only --out $(q "$RUN_DIR") --shards $SHARDS"
fi
data=$(q "$DATA_DIR")
tpu_ssh all "$(remote_prelude)$step; cd $data; \
echo \"\$(hostname): \$(LC_ALL=C ls | wc -l) files, sha256 of all: \$(LC_ALL=C cat dataset_info.json *.tfrecord | sha256sum | cut -c1-16)\""
echo "data in $REMOTE_DIR/$DATA_DIR on every worker (digests above must agree): next, DATA_DIR=$DATA_DIR tpu_scripts/train.sh" >&2
