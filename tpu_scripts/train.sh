#!/usr/bin/env bash
# train.sh: start `trajsv train` on every worker of the TPU VM at once (step 4 of tpu_scripts/README.md).
# On a multi-host slice each worker runs one process with --distributed: jax.distributed.initialize()
# with no arguments finds the coordinator, process count and process id from the TPU metadata.
#
# Usage: [VAR=value ...] tpu_scripts/train.sh [--config.KEY=VALUE ...]   (passed on to trajsv train)
#        tpu_scripts/train.sh --stop     stop the run started in the background on every worker
#        tpu_scripts/train.sh --help
#
# Settings (environment variables):
#   DATA_DIR     dataset directory: gs://BUCKET/PATH, or a path relative to REMOTE_DIR that holds the
#                same files on every worker (prepare_data.sh)                             (required)
#   WORKDIR      checkpoints, metrics.jsonl and tensorboard/; on a multi-host slice it must be
#                gs://... (every host writes its part of each orbax checkpoint into one directory);
#                on a single-host VM a path relative to REMOTE_DIR is fine               (required)
#   CONFIG       config file                                            (default: configs/paper.py)
#   DISTRIBUTED  auto: --distributed when the slice has more than one worker; 1: always; 0: never
#                                                                                    (default: auto)
#   DETACH       1: run under nohup on every worker, output to LOG, and return; 0: stream every
#                worker's output here until the run ends (Ctrl-C ends the ssh sessions)  (default: 1)
#   LOG          log file on every worker, relative to REMOTE_DIR                (default: train.log)
#   STARTUP_SECONDS  with DETACH=1: how long to watch the run before returning; a run that ends by
#                then is reported with the end of its log                                (default: 10)
#   TPU_NAME, ZONE, PROJECT, REMOTE_DIR, WORKERS   shared settings, see tpu_scripts/README.md
#
# Examples:
#   DATA_DIR=runs/tpu_demo/tfrecords WORKDIR=runs/v5e tpu_scripts/train.sh     # v5litepod-8, one host
#   TPU_NAME=trajsv-v4 DATA_DIR=runs/tpu_demo/tfrecords WORKDIR=gs://my-bucket/trajsv/v4-32 \
#     tpu_scripts/train.sh --config.batch_size=1024

set -euo pipefail
# shellcheck source=tpu_scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
handle_help "${1:-}"
need_gcloud
LOG=${LOG:-train.log}

if [[ ${1:-} == --stop ]]; then
  need_zone
  tpu_ssh all "cd $(q "$REMOTE_DIR") && if [ -f train.pid ]; then kill \$(cat train.pid) 2>/dev/null \
&& echo \"\$(hostname): stopped pid \$(cat train.pid)\" || echo \"\$(hostname): not running\"; rm -f train.pid; \
else echo \"\$(hostname): no train.pid\"; fi"
  exit 0
fi

need_var DATA_DIR "export DATA_DIR=gs://BUCKET/PATH or the path prepare_data.sh printed (e.g. runs/tpu_demo/tfrecords)"
need_var WORKDIR "export WORKDIR=gs://BUCKET/PATH (a local path only on a single-host TPU VM)"
need_zone
CONFIG=${CONFIG:-configs/paper.py}
workers=$(worker_count)
if ((workers > 1)) && [[ $WORKDIR != gs://* ]]; then
  die "WORKDIR=$WORKDIR is not a gs:// path, but $TPU_NAME has $workers workers: all of them write one checkpoint directory, so use gs://BUCKET/PATH"
fi
cmd=(trajsv train --config "$CONFIG" "--config.data_dir=$DATA_DIR" --workdir "$WORKDIR")
case "${DISTRIBUTED:-auto}" in
auto) if ((workers > 1)); then cmd+=(--distributed); fi ;;
1) cmd+=(--distributed) ;;
0) ;;
*) die "DISTRIBUTED must be auto, 1 or 0, got '$DISTRIBUTED'" ;;
esac
if (($#)); then cmd+=("$@"); fi
line=$(printf '%q ' "${cmd[@]}")
line=${line% }
log=$(q "$LOG")
[[ ${STARTUP_SECONDS:-10} =~ ^[0-9]+$ ]] || die "STARTUP_SECONDS must be a whole number of seconds, got '$STARTUP_SECONDS'"

echo "$workers worker(s) of $TPU_NAME: ${cmd[*]}" >&2
if [[ ${DETACH:-1} == 0 ]]; then
  tpu_ssh all "$(remote_prelude)$line 2>&1 | tee $log"
else
  # One run per TPU: refuse to start while the previous one still holds the chips.
  tpu_ssh all "$(remote_prelude)if [ -f train.pid ] && kill -0 \$(cat train.pid) 2>/dev/null; then \
echo \"\$(hostname): a run is still going (pid \$(cat train.pid)): tpu_scripts/train.sh --stop\" >&2; exit 1; fi; \
nohup $line > $log 2>&1 < /dev/null & pid=\$!; echo \$pid > train.pid; sleep ${STARTUP_SECONDS:-10}; \
if ! kill -0 \$pid 2>/dev/null; then echo \"\$(hostname): the run ended within ${STARTUP_SECONDS:-10} s; end of $log:\" >&2; \
tail -n 20 $log >&2; exit 1; fi; echo \"\$(hostname): running, pid \$pid, log $log\""
  project=${PROJECT:+ --project $PROJECT}
  echo "follow worker 0: $GCLOUD compute tpus tpu-vm ssh $TPU_NAME --zone $ZONE$project --worker=0 --command 'tail -f $REMOTE_DIR/$LOG'" >&2
  echo "when it is done: WORKDIR=$WORKDIR tpu_scripts/fetch_checkpoints.sh" >&2
fi
