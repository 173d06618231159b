"""Shared fixtures: the real bundled SkillCorner match, read once per test session with the fast reader."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest

# Tests run on CPU with 8 virtual devices (as CI), unless the caller chose otherwise. The suite is dominated by XLA
# compiling small models' steps, not by running them: LLVM's optimisation level 0 compiles them ~1.5x faster (the
# benchmarks, which measure speed, run at the default level).
FAST_COMPILE = "--xla_backend_optimization_level=0"
os.environ.setdefault("XLA_FLAGS", f"--xla_force_host_platform_device_count=8 {FAST_COMPILE}")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# XLA executables cached on disk and shared by the xdist workers and the subprocesses the tests start: the suite
# compiles the same tiny models' steps many times (each test builds its own jitted functions).
REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(REPO / ".pytest_cache" / "jax_compilation_cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

SHARED = REPO.parent / "shared"


def shared_path(relative: str) -> Path:
    """A path under ../shared, or skip the test naming what is missing."""
    path = SHARED / relative
    if not path.exists():
        pytest.skip(f"{path} not found: this test needs the shared data folder beside the repository")
    return path


SKIP_IN_WALK = {".git", ".venv", ".pytest_cache", "__pycache__", ".ruff_cache", ".mypy_cache"}


def file_states(*roots: Path) -> dict[Path, tuple[int, int]]:
    """(size, mtime) of every file under `roots` (caches left out): two of these show what a command wrote."""
    states = {}
    for root in roots:
        for folder, dirs, names in os.walk(root):
            dirs[:] = [d for d in dirs if d not in SKIP_IN_WALK]
            for name in names:
                path = Path(folder, name)
                with contextlib.suppress(FileNotFoundError):
                    st = path.lstat()
                    states[path] = (st.st_size, st.st_mtime_ns)
    return states


def assert_written_only_inside(before: dict, after: dict, *allowed: Path) -> None:
    """Every file created, changed or deleted between two `file_states` lies inside one of `allowed`.

    In the repository only files created or deleted count (people edit its sources while the tests run)."""
    changed = {
        p
        for p in before.keys() | after.keys()
        if before.get(p) != after.get(p) and not (p.is_relative_to(REPO) and p in before and p in after)
    }
    outside = sorted(str(p) for p in changed if not any(p.is_relative_to(a) for a in allowed))
    assert not outside, f"written outside the output folders {[str(a) for a in allowed]}: {outside}"


def one_line_error(excinfo, *words: str) -> str:
    """The message of a caught UserError, checked to be one line that names every one of `words`."""
    message = str(excinfo.value)
    assert "\n" not in message, message
    for word in words:
        assert word in message, message
    return message


@pytest.fixture(scope="session")
def bundled_frames():
    """Frame-level tracking of the real SkillCorner match shipped inside kloppy's wheel."""
    from trajsv_jax.data import ingest

    return ingest.read_skillcorner(*ingest.bundled_skillcorner_files())


@pytest.fixture(scope="session")
def bundled_source(bundled_frames):
    """The bundled match as a store Source (clips cut as `trajsv ingest` does)."""
    from trajsv_jax.data import store

    source, _ = store.source_from_frames(bundled_frames, "skillcorner_2417")
    return source


@pytest.fixture(scope="session")
def demo_dataset(bundled_source, tmp_path_factory) -> Path:
    """TFRecords of the bundled match as the demo writes them (videos of 4 clips; train, val and test splits)."""
    from trajsv_jax import prepare
    from trajsv_jax.data import store

    out = tmp_path_factory.mktemp("demo_dataset")
    store.write_source(out / "store", bundled_source)
    prepare.tokenize_store(out / "store", split=prepare.Split(4, 0.8, 0.1))
    prepare.write_dataset(out / "store", out / "tfrecords", shards=2)
    return out / "tfrecords"


def tiny_model_overrides(data_dir: Path) -> list[str]:
    """`--config.` overrides of configs/demo.py for a small, fast model on `data_dir` (tests of the training loop).

    Training runs on one device (a mesh over 8 virtual devices compiles ~1.4x slower); the sharded step is tested on
    8 devices against 1 in tests/training/test_train.py.
    """
    model = {"d_model": 16, "ffn": 32, "vrnet_hidden": 32, "out_dim": 16, "heads": 2, "vrnet_heads": 2}
    fields = [f"--config.model.{k}={v}" for k, v in model.items()]
    return [f"--config.data_dir={data_dir}", *fields, "--config.mesh.data=1"]
