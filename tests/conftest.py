"""Shared fixtures: the real bundled SkillCorner match, read once per test session with the fast reader."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Tests run on CPU with 8 virtual devices (as CI), unless the caller chose otherwise.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def shared_path(relative: str) -> Path:
    """A path under ../shared, or skip the test naming what is missing."""
    path = SHARED / relative
    if not path.exists():
        pytest.skip(f"{path} not found: this test needs the shared data folder beside the repository")
    return path


@pytest.fixture(scope="session")
def bundled_frames():
    """Frame-level tracking of the real SkillCorner match shipped inside kloppy's wheel."""
    from trajsv_jax import ingest

    return ingest.read_skillcorner(*ingest.bundled_skillcorner_files())


@pytest.fixture(scope="session")
def bundled_source(bundled_frames):
    """The bundled match as a store Source (clips cut as `trajsv ingest` does)."""
    from trajsv_jax import store

    source, _ = store.source_from_frames(bundled_frames, "skillcorner_2417")
    return source
