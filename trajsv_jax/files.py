"""Safe file handling shared by every command: atomic writes, one writer per output folder, paths proven to stay
inside their folder, and checksums of what was written (docs/RELIABILITY.md)."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from trajsv_jax.errors import UserError

LOCK_FILE = ".trajsv.lock"
_HELD: set[Path] = set()  # folders this process has locked (a command that calls another re-enters its lock)
_SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


def checked_name(name: Any, where: str, fix: str) -> str:
    """A file-name component read from a manifest: refused unless it is a plain name (no `/`, `..`, hidden files).

    `fix` says which `trajsv` command re-creates the manifest."""
    if not isinstance(name, str) or not _SAFE_NAME.fullmatch(name) or name in {".", ".."}:
        raise UserError(
            f"{where}: {name!r} is not a valid file name (letters, digits, `_`, `.`, `-`; no path): the manifest is "
            f"corrupt or was edited. {fix}"
        )
    return name


def inside(root: str | os.PathLike, *parts: str, fix: str = "") -> Path:
    """root/parts..., refused if it resolves outside root (a `..`, an absolute part or a symlink out)."""
    base = Path(root).resolve()
    path = Path(root).joinpath(*parts)
    if not path.resolve().is_relative_to(base):
        raise UserError(f"{root}: the path {os.path.join(*parts)!r} leads outside it. {fix}".rstrip())
    return path


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call write(tmp) on a hidden temporary name beside `path`, fsync it, then rename it into place."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def atomic_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def atomic_json(path: str | os.PathLike, value: Any) -> Path:
    return atomic_text(path, json.dumps(value, indent=1, default=str) + "\n")


def atomic_npz(path: str | os.PathLike, **arrays: np.ndarray) -> Path:
    def save(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    return atomic_write(path, save)


def atomic_npy(path: str | os.PathLike, array: np.ndarray) -> Path:
    def save(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.save(f, array)

    return atomic_write(path, save)


def sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def checksums(root: str | os.PathLike, names: list[str]) -> dict[str, str]:
    """{name: sha256} of files inside root."""
    return {name: sha256(inside(root, name)) for name in names}


def verify_checksums(root: str | os.PathLike, expected: dict[str, str], where: str, fix: str) -> None:
    """Raise UserError naming every file of root whose sha256 differs from `expected` (or that is missing)."""
    bad = []
    for name, digest in sorted(expected.items()):
        path = inside(root, checked_name_path(name, where, fix), fix=fix)
        if not path.is_file():
            bad.append(f"{name} missing")
        elif sha256(path) != digest:
            bad.append(f"{name} changed")
    if bad:
        raise UserError(f"{where}: {', '.join(bad)} since it was written (checksum mismatch). {fix}")


def checked_name_path(name: Any, where: str, fix: str) -> str:
    """A relative path of plain names (`a/b.npy`) read from a manifest."""
    if not isinstance(name, str):
        raise UserError(f"{where}: {name!r} is not a file name. {fix}")
    return os.path.join(*(checked_name(part, where, fix) for part in name.split("/")))


def read_npz(path: str | os.PathLike, fix: str) -> dict[str, np.ndarray]:
    """Every array of an .npz, or a UserError naming the file (missing, truncated, corrupt)."""
    try:
        with open(path, "rb") as f:
            data = io.BytesIO(f.read())
        with np.load(data, allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}
    except FileNotFoundError:
        raise UserError(f"{path}: missing. {fix}") from None
    except Exception as e:  # zipfile.BadZipFile, zlib.error, ValueError, EOFError, OSError: a corrupt file
        raise UserError(f"{path}: unreadable ({type(e).__name__}: {e}). {fix}") from None


def read_json(path: str | os.PathLike, fix: str, kind: str = "file") -> Any:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: missing. {fix}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: unreadable {kind} ({e}). {fix}") from None


def output_folder(path: str | os.PathLike, what: str, create: bool = True) -> Path:
    """Create the output folder (parents too), or say in one line why it cannot be; create=False only checks."""
    path = Path(path)
    for folder in (path, *path.parents):
        if folder.exists() and not folder.is_dir():
            raise UserError(
                f"{path}: {'it' if folder == path else folder} is a file, not a folder; `trajsv {what}` writes a "
                "folder. Give a new or existing folder."
            )
        if folder.exists():
            break
    if not create:
        return path
    try:
        path.mkdir(parents=True, exist_ok=True)
    except PermissionError:
        raise UserError(f"{path}: no permission to create it. Give a folder you can write to.") from None
    return path


@contextlib.contextmanager
def locked(folder: str | os.PathLike, command: str) -> Iterator[Path]:
    """Hold an exclusive lock on an output folder for one command; a second writer fails at once naming the holder.

    The lock is `fcntl.flock` on `folder/.trajsv.lock`, so it is released by the kernel when the process dies:
    a crashed run never leaves a stale lock behind."""
    folder = output_folder(folder, command)
    key = folder.resolve()
    if key in _HELD:
        yield folder
        return
    path = folder / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            raise UserError(
                f"{folder}: in use by {holder}. Wait for it to finish, or give another output folder."
            ) from None
        os.ftruncate(fd, 0)
        command_line = " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv))[:200]
        os.pwrite(fd, f"pid {os.getpid()} ({command_line})".encode(), 0)
        _HELD.add(key)
        try:
            yield folder
        finally:
            _HELD.discard(key)
    finally:
        os.close(fd)
