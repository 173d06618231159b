# shellcheck shell=bash
# Shared helpers for tpu_scripts/*.sh. Sourced, never run; the scripts' settings are read here.
# Written for bash >= 3.2 (macOS's /bin/bash included): no empty "${array[@]}" under set -u.
#
# Settings every TPU script shares (environment variables):
#   TPU_NAME     TPU VM / slice name                         (default: trajsv-tpu)
#   ZONE         zone of the TPU     (default: gcloud config get-value compute/zone)
#   PROJECT      Google Cloud project      (default: gcloud's core/project setting)
#   REMOTE_DIR   repository checkout on every worker, relative to the home directory
#                                                               (default: trajsv-jax)
#   WORKERS      number of TPU VM workers (hosts) of the slice
#                (default: counted from `gcloud compute tpus tpu-vm describe`)
#   GCLOUD       the gcloud binary                                 (default: gcloud)

TPU_NAME=${TPU_NAME:-trajsv-tpu}
PROJECT=${PROJECT:-}
REMOTE_DIR=${REMOTE_DIR:-trajsv-jax}
GCLOUD=${GCLOUD:-gcloud}
# shellcheck disable=SC2034 # used by the scripts that source this file
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# One line on stderr, prefixed with the script's name, then exit 1.
die() {
  printf '%s: %s\n' "$(basename "$0")" "$*" >&2
  exit 1
}

# Print the comment block at the top of the calling script (line 2 up to the first blank line).
usage() {
  sed -n '2,/^$/{/^#/s/^# \{0,1\}//p;}' "$0"
}

# `script.sh ... -h|--help` prints the usage and exits 0, before anything needs gcloud.
handle_help() {
  local arg
  for arg in "$@"; do
    if [[ $arg == -h || $arg == --help ]]; then
      usage
      exit 0
    fi
  done
}

need_gcloud() {
  command -v "$GCLOUD" >/dev/null 2>&1 ||
    die "gcloud not found: install the Google Cloud CLI (https://cloud.google.com/sdk/docs/install) or set GCLOUD=/path/to/gcloud"
}

# Fills ZONE and the flags every `gcloud compute tpus` call takes: GC_FLAGS=(--zone Z [--project P]).
need_zone() {
  ZONE=${ZONE:-$("$GCLOUD" config get-value compute/zone 2>/dev/null || true)}
  [[ -n $ZONE ]] || die "ZONE not set: export ZONE=<zone of the TPU, e.g. us-central2-b> or run 'gcloud config set compute/zone ZONE'"
  GC_FLAGS=(--zone "$ZONE")
  if [[ -n $PROJECT ]]; then GC_FLAGS+=(--project "$PROJECT"); fi
}

need_var() {
  [[ -n ${!1:-} ]] || die "$1 not set: $2"
}

# Echo the command on stderr (words with shell characters in single quotes), then run it.
run() {
  local arg line='+' quote="'\\''"
  for arg in "$@"; do
    if [[ $arg =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then line+=" $arg"; else line+=" '${arg//\'/$quote}'"; fi
  done
  printf '%s\n' "$line" >&2
  "$@"
}

# Run a shell command line on workers ("all", or an index) of the TPU VM.
tpu_ssh() {
  local worker=$1 command=$2
  run "$GCLOUD" compute tpus tpu-vm ssh "$TPU_NAME" "${GC_FLAGS[@]}" --worker="$worker" --command "$command"
}

# Number of workers (hosts) of the slice: WORKERS, else one per network endpoint of the TPU VM.
worker_count() {
  if [[ -n ${WORKERS:-} ]]; then
    [[ $WORKERS =~ ^[1-9][0-9]*$ ]] || die "WORKERS must be a positive integer, got '$WORKERS'"
    echo "$WORKERS"
    return
  fi
  local json count
  json=$("$GCLOUD" compute tpus tpu-vm describe "$TPU_NAME" "${GC_FLAGS[@]}" --format='json(networkEndpoints)') ||
    die "could not describe TPU '$TPU_NAME' in zone $ZONE: create it first (create.sh) or set TPU_NAME/ZONE"
  count=$(grep -c '"ipAddress"' <<<"$json" || true)
  [[ $count -ge 1 ]] || die "TPU '$TPU_NAME' has no network endpoints yet (still creating?): retry, or set WORKERS"
  echo "$count"
}

# Shell-quote one word for a remote command line.
q() { printf '%q' "$1"; }

# Start of every remote command line: strict mode, into the checkout, its venv active.
remote_prelude() {
  printf 'set -euo pipefail; cd %s; . .venv/bin/activate; ' "$(q "$REMOTE_DIR")"
}
