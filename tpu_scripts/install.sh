#!/usr/bin/env bash
# install.sh: put the repository on EVERY worker of the TPU VM and install it into a venv there
# (step 2 of tpu_scripts/README.md). Safe to re-run: it refreshes the code and the packages.
#
# Usage: [VAR=value ...] tpu_scripts/install.sh [--help]
#
# Settings (environment variables):
#   TPU_NAME, ZONE, PROJECT, REMOTE_DIR   shared settings, see tpu_scripts/README.md
#   REPO_URL    git URL to clone on every worker; if unset, this working tree (tracked files and
#               untracked files git does not ignore) is sent as a tarball with
#               `gcloud compute tpus tpu-vm scp --worker=all`
#   REPO_REF    with REPO_URL: branch, tag or commit to check out          (default: the default branch)
#   PYTHON      Python on the workers, 3.10 to 3.12                        (default: python3)
#   JAX_SPEC    the JAX TPU requirement; the JAX install guide's TPU command is
#               pip install -U "jax[tpu]" (jax + matching jaxlib + libtpu from PyPI)
#                                                                         (default: jax[tpu])
#
# Example:
#   ZONE=us-central2-b TPU_NAME=trajsv-v4 tpu_scripts/install.sh
#   REPO_URL=https://github.com/me/trajsv-jax.git REPO_REF=main tpu_scripts/install.sh

set -euo pipefail
# shellcheck source=tpu_scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
handle_help "$@"
need_gcloud
need_zone

PYTHON=${PYTHON:-python3}
JAX_SPEC=${JAX_SPEC:-jax[tpu]}
dir=$(q "$REMOTE_DIR")

if [[ -n ${REPO_URL:-} ]]; then
  fetch="if [ -d $dir/.git ]; then git -C $dir fetch --all --tags -q; else git clone -q $(q "$REPO_URL") $dir; fi; "
  if [[ -n ${REPO_REF:-} ]]; then
    fetch+="git -C $dir checkout -q $(q "$REPO_REF"); git -C $dir pull -q --ff-only || true; "
  else
    fetch+="git -C $dir pull -q --ff-only; "
  fi
else
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  tarball=$tmp/trajsv-src.tar.gz
  git -C "$REPO_ROOT" rev-parse --git-dir >/dev/null 2>&1 || die "$REPO_ROOT is not a git checkout: set REPO_URL"
  # Tracked and untracked-but-not-ignored files that exist (no .venv, runs/ or caches).
  (cd "$REPO_ROOT" && git ls-files -z --cached --others --exclude-standard |
    while IFS= read -r -d '' f; do if [[ -f $f ]]; then printf '%s\0' "$f"; fi; done |
    tar --null -T - -czf "$tarball")
  run "$GCLOUD" compute tpus tpu-vm scp "$tarball" "$TPU_NAME:trajsv-src.tar.gz" "${GC_FLAGS[@]}" --worker=all
  fetch="mkdir -p $dir; tar -xzf trajsv-src.tar.gz -C $dir; rm -f trajsv-src.tar.gz; "
fi

# python3 -m venv needs the python3-venv package, missing from some TPU VM images: install it once.
venv="if [ ! -x .venv/bin/python ]; then $(q "$PYTHON") -m venv .venv || "
venv+="{ sudo apt-get -qq update && sudo apt-get -qq install -y python3-venv && $(q "$PYTHON") -m venv --clear .venv; }; fi; "
versions="import importlib.metadata as m, socket; "
versions+="print(socket.gethostname(), *(p + '==' + m.version(p) for p in ('jax', 'jaxlib', 'libtpu')))"

tpu_ssh all "set -euo pipefail; ${fetch}cd $dir; ${venv}. .venv/bin/activate; \
pip install -q -U pip; pip install -q -e .; pip install -q -U $(q "$JAX_SPEC"); python -c $(q "$versions")"
echo "installed on every worker of $TPU_NAME: next, tpu_scripts/prepare_data.sh" >&2
