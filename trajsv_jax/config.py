"""Training configs: ml_collections Python files (`configs/*.py`) with `--config.key=value` overrides.

A config file defines `get_config()` (optionally `get_config(arg)`, selected as `path:arg`, like absl's
`config_flags`). Overrides are parsed as Python literals where they are one (`0.05`, `True`, `(1, 2)`) and as strings
otherwise, and must keep the type of the value they replace, so a typo fails loudly instead of training something else.
A float field also takes `nan` / `inf` (so that `check` can refuse them by name rather than by type). `check` is how
the trainers validate values up front, before anything is compiled or written.
"""

from __future__ import annotations

import ast
import importlib.resources
import importlib.util
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ml_collections

from trajsv_jax.errors import UserError


def load_config(spec: str, overrides: Sequence[str] = ()) -> ml_collections.ConfigDict:
    """Load `path.py` or `path.py:arg`, then apply `--config.a.b=value` overrides in order."""
    path, _, arg = spec.partition(":")
    if not Path(path).is_file() and Path(path).parent.name == "configs":  # the installed package's copy
        path = str(importlib.resources.files("configs") / Path(path).name)
    if not Path(path).is_file():
        raise UserError(f"{path}: no such config file. Use one of configs/*.py (paper.py, demo.py, scaling.py).")
    module_spec = importlib.util.spec_from_file_location(f"trajsv_config_{Path(path).stem}", path)
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
    except Exception as e:  # a config file is user code: report where it failed, in one line
        raise UserError(f"{path}: cannot load config ({type(e).__name__}: {e}).") from None
    if not hasattr(module, "get_config"):
        raise UserError(f"{path}: defines no get_config(). A config file returns an ml_collections.ConfigDict.")
    config = module.get_config(arg) if arg else module.get_config()
    for override in overrides:
        apply_override(config, override, path)
    return config


def _parse_value(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _float_or_text(text: str) -> float | str:
    """`nan`, `inf`, `-inf` as floats (not Python literals), anything else unchanged."""
    try:
        return float(text)
    except ValueError:
        return text


def apply_override(config: ml_collections.ConfigDict, override: str, where: str = "config") -> None:
    """Apply one `--config.a.b=value` (or `a.b=value`) to `config` in place, keeping the field's type."""
    key, sep, text = override.removeprefix("--").removeprefix("config.").partition("=")
    if not sep or not key:
        raise UserError(f"{override!r}: expected --config.KEY=VALUE, e.g. --config.batch_size=32")
    *parents, leaf = key.split(".")
    node = config
    for i, name in enumerate(parents):
        if name not in node or not isinstance(node[name], ml_collections.ConfigDict):
            raise UserError(f"{override!r}: {where} has no section {'.'.join(parents[: i + 1])!r}.")
        node = node[name]
    if leaf not in node:
        raise UserError(f"{override!r}: {where} has no field {key!r}; it has {sorted(node.keys())}.")
    old, value = node[leaf], _parse_value(text)
    if isinstance(old, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if isinstance(old, float) and isinstance(value, str):
        value = _float_or_text(text)
    if isinstance(old, str) and not isinstance(value, str):
        value = text
    if old is not None and type(value) is not type(old):
        raise UserError(
            f"{override!r}: {key} is a {type(old).__name__} ({old!r}), got a {type(value).__name__}. "
            "Give a value of the same type."
        )
    node[leaf] = value


def check(ok: bool, key: str, value: Any, accepted: str) -> None:
    """UserError naming `key`, its bad `value` and what is `accepted`, unless `ok` (config validation in one line)."""
    if not ok:
        raise UserError(f"config {key}={value!r}: {accepted}. Set another with --config.{key}=VALUE.")


def is_count(value: Any, low: int = 1) -> bool:
    """An int (not a bool) of at least `low`."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def is_number(value: Any, low: float = -math.inf, high: float = math.inf, *, above: bool = False) -> bool:
    """A finite int or float in [low, high] (or (low, high] when `above`)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return False
    return (value > low if above else value >= low) and value <= high
