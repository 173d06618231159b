#!/usr/bin/env bash
# delete.sh: delete the TPU VM (or the queued resource and its node), after a confirmation
# (step 6 of tpu_scripts/README.md). A TPU bills until it is deleted; what was on its disks is lost,
# so fetch_checkpoints.sh first unless WORKDIR is on gs://.
#
# Usage: [VAR=value ...] tpu_scripts/delete.sh [--help]
#
# Settings (environment variables):
#   YES=1      do not ask (needed when stdin is not a terminal)
#   QUEUED=1   it was created with QUEUED=1: delete the queued resource QR_ID with --force,
#              which deletes its node too
#   QR_ID      queued-resource id                                       (default: TPU_NAME-qr)
#   TPU_NAME, ZONE, PROJECT   shared settings, see tpu_scripts/README.md
#
# Example:
#   TPU_NAME=trajsv-v4 ZONE=us-central2-b YES=1 tpu_scripts/delete.sh

set -euo pipefail
# shellcheck source=tpu_scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
handle_help "$@"
need_gcloud
need_zone
QR_ID=${QR_ID:-$TPU_NAME-qr}
if [[ ${QUEUED:-0} == 1 ]]; then what="queued resource $QR_ID (and its TPU $TPU_NAME)"; else what="TPU VM $TPU_NAME"; fi

if [[ ${YES:-0} != 1 ]]; then
  [[ -t 0 ]] || die "refusing to delete $what in $ZONE without confirmation: stdin is not a terminal, set YES=1"
  read -r -p "Delete $what in $ZONE? [y/N] " answer
  [[ $answer == [yY] || $answer == [yY][eE][sS] ]] || die "not deleted"
fi
if [[ ${QUEUED:-0} == 1 ]]; then
  run "$GCLOUD" compute tpus queued-resources delete "$QR_ID" "${GC_FLAGS[@]}" --force --quiet
else
  run "$GCLOUD" compute tpus tpu-vm delete "$TPU_NAME" "${GC_FLAGS[@]}" --quiet
fi
