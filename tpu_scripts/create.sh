#!/usr/bin/env bash
# create.sh: create a Cloud TPU VM, single host or multi-host slice (step 1 of tpu_scripts/README.md).
#
# Usage: [VAR=value ...] tpu_scripts/create.sh [--help]
#
# Settings (environment variables):
#   TPU_NAME          name of the TPU VM / slice                          (default: trajsv-tpu)
#   ZONE              zone with capacity for the type, e.g. us-west4-a (v5e), us-central2-b (v4)
#                     (default: gcloud config get-value compute/zone)
#   PROJECT           Google Cloud project                     (default: gcloud's core/project)
#   ACCELERATOR_TYPE  v5litepod-8 (1 host), v4-32 (4 hosts), v5p-16 (2 hosts), v6e-8 (1 host), ...
#                                                                        (default: v5litepod-8)
#   RUNTIME_VERSION   TPU software version; default from the generation, per the Cloud TPU
#                     "TPU software versions" page for JAX: v6e v2-alpha-tpuv6e, v5p
#                     v2-alpha-tpuv5, v5e (v5litepod) v2-alpha-tpuv5-lite, v4 and older
#                     tpu-ubuntu2204-base
#   SCOPES            access scopes of the VM's service account; cloud-platform leaves access to IAM
#                     (needed to write checkpoints to gs://); empty: gcloud's default
#                                         (default: https://www.googleapis.com/auth/cloud-platform)
#   SERVICE_ACCOUNT   service account of the VMs       (default: the Compute Engine default one)
#   SPOT=1            Spot VM (cheaper, can be preempted at any time)
#   PREEMPTIBLE=1     legacy preemptible TPU (create-node API only)
#   QUEUED=1          request through the queued-resources API (Google's recommended way when
#                     capacity is short): the node is named TPU_NAME, the request QR_ID
#   QR_ID             queued-resource id                            (default: TPU_NAME-qr)
#   VALID_UNTIL       with QUEUED=1: give up the request after this long, e.g. 6h
#   WAIT=0            with QUEUED=1: return at once instead of waiting until it is ACTIVE
#   EXTRA_CREATE_ARGS more gcloud flags, split on spaces (e.g. "--internal-ips --tags=x")
#
# Examples:
#   ZONE=us-west4-a tpu_scripts/create.sh
#   ZONE=us-central2-b ACCELERATOR_TYPE=v4-32 TPU_NAME=trajsv-v4 tpu_scripts/create.sh
#   QUEUED=1 SPOT=1 ZONE=us-central1-a ACCELERATOR_TYPE=v5p-16 tpu_scripts/create.sh

set -euo pipefail
# shellcheck source=tpu_scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
handle_help "$@"
need_gcloud
need_zone

ACCELERATOR_TYPE=${ACCELERATOR_TYPE:-v5litepod-8}
if [[ -z ${RUNTIME_VERSION:-} ]]; then
  case "$ACCELERATOR_TYPE" in
  v6e-*) RUNTIME_VERSION=v2-alpha-tpuv6e ;;
  v5p-*) RUNTIME_VERSION=v2-alpha-tpuv5 ;;
  v5litepod-*) RUNTIME_VERSION=v2-alpha-tpuv5-lite ;;
  v2-* | v3-* | v4-*) RUNTIME_VERSION=tpu-ubuntu2204-base ;;
  *) die "no default RUNTIME_VERSION for ACCELERATOR_TYPE=$ACCELERATOR_TYPE: set RUNTIME_VERSION (gcloud compute tpus tpu-vm versions list --zone $ZONE)" ;;
  esac
fi
QR_ID=${QR_ID:-$TPU_NAME-qr}
flags=("${GC_FLAGS[@]}" --accelerator-type "$ACCELERATOR_TYPE")
read -ra extra <<<"${EXTRA_CREATE_ARGS:-}"
SCOPES=${SCOPES-https://www.googleapis.com/auth/cloud-platform}
if [[ -n $SCOPES ]]; then flags+=(--scopes "$SCOPES"); fi
if [[ -n ${SERVICE_ACCOUNT:-} ]]; then flags+=(--service-account "$SERVICE_ACCOUNT"); fi
if [[ ${SPOT:-0} == 1 ]]; then flags+=(--spot); fi

if [[ ${QUEUED:-0} != 1 ]]; then
  if [[ ${PREEMPTIBLE:-0} == 1 ]]; then flags+=(--preemptible); fi
  run "$GCLOUD" compute tpus tpu-vm create "$TPU_NAME" "${flags[@]}" --version "$RUNTIME_VERSION" ${extra[@]+"${extra[@]}"}
else
  [[ ${PREEMPTIBLE:-0} != 1 ]] || die "PREEMPTIBLE=1 is not offered by queued resources: use SPOT=1"
  if [[ -n ${VALID_UNTIL:-} ]]; then flags+=(--valid-until-duration "$VALID_UNTIL"); fi
  run "$GCLOUD" compute tpus queued-resources create "$QR_ID" "${flags[@]}" \
    --runtime-version "$RUNTIME_VERSION" --node-id "$TPU_NAME" ${extra[@]+"${extra[@]}"}
  if [[ ${WAIT:-1} == 1 ]]; then
    echo "waiting for queued resource $QR_ID to become ACTIVE (Ctrl-C stops waiting, not the request)" >&2
    while :; do
      state=$("$GCLOUD" compute tpus queued-resources describe "$QR_ID" "${GC_FLAGS[@]}" --format='value(state.state)')
      case "$state" in
      ACTIVE) break ;;
      FAILED | SUSPENDED) die "queued resource $QR_ID is $state: see gcloud compute tpus queued-resources describe $QR_ID --zone $ZONE" ;;
      esac
      echo "  $(date +%H:%M:%S) $state" >&2
      sleep "${POLL_SECONDS:-30}"
    done
  fi
fi
echo "TPU $TPU_NAME ($ACCELERATOR_TYPE, $RUNTIME_VERSION) in $ZONE: next, tpu_scripts/install.sh" >&2
