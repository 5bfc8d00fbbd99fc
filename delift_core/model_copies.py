"""Safetensors copies of GGUF models, so that only the first process pays for de-quantising.

A copy is a save_pretrained folder under $DELIFT_MODEL_COPIES, else $XDG_CACHE_HOME/delift/models
or ~/.cache/delift/models: one per user, whatever score cache ($DELIFT_CACHE) a run uses, so
that tests and projects with caches of their own share one copy. Its name carries the GGUF file's
sha256, so a changed file gets a new copy. The hash is read once per (path, size, mtime) and
remembered in gguf-sha256.json there.

Copies are written in a temporary folder that is then renamed into place, and removed by renaming
them away first: other processes see a whole copy or none.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

# Part of every copy's name: change it when the way copies are made changes.
COPY_FORMAT = "v1"
_MEMO_FILE = "gguf-sha256.json"
_SHA256 = re.compile(r"[0-9a-f]{64}")
# Temporary folders older than this are left over from a process that died while writing.
_STALE_SECONDS = 3600


COPIES_ENV = "DELIFT_MODEL_COPIES"


def copies_folder() -> Path:
    """The folder holding the copies ($DELIFT_MODEL_COPIES, else the user's delift cache)."""
    if os.environ.get(COPIES_ENV):
        return Path(os.environ[COPIES_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "delift" / "models"


def copy_folder(gguf: Path) -> Path:
    """Where the copy of the GGUF file `gguf` lives (it may not exist yet)."""
    return copies_folder() / f"{gguf.stem}-{file_sha256(gguf)[:16]}-{COPY_FORMAT}"


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes, read once per (path, size, mtime) and then remembered."""
    stat = path.stat()
    key, stamp = str(path.resolve()), [stat.st_size, stat.st_mtime_ns]
    memo_path = copies_folder() / _MEMO_FILE
    memo = _read_memo(memo_path)
    entry = memo.get(key)
    if isinstance(entry, dict) and entry.get("stamp") == stamp:
        digest = entry.get("sha256")
        if isinstance(digest, str) and _SHA256.fullmatch(digest):
            return digest
    with path.open("rb") as file:
        digest = hashlib.file_digest(file, "sha256").hexdigest()
    memo[key] = {"stamp": stamp, "sha256": digest}
    _write_memo(memo_path, memo)
    return digest


def _read_memo(path: Path) -> dict[str, object]:
    try:
        memo = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return memo if isinstance(memo, dict) else {}


def _write_memo(path: Path, memo: dict[str, object]) -> None:
    # Best effort: without the memo the file is only hashed again next time.
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "w") as file:
            json.dump(memo, file)
        os.replace(tmp, path)
    except OSError as exc:
        log.debug("cannot remember file hashes in %s: %s", path, exc)


def write_copy(folder: Path, save: Callable[[Path], None]) -> None:
    """Run `save(temporary folder)`, then rename that folder to `folder` so it appears whole.

    The temporary folder is removed whatever `save` raises. When another process put `folder`
    in place first, its copy is kept and this one dropped.
    """
    folder.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(folder.parent)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    try:
        save(tmp)
        try:
            os.rename(tmp, folder)
        except OSError:
            if not folder.is_dir():
                raise
            log.info("another process wrote %s first; keeping its copy", folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def discard(folder: Path) -> None:
    """Remove a copy, renaming it away first so that no process finds it half-removed."""
    try:
        trash = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    except OSError as exc:
        log.warning("cannot remove %s: %s", folder, exc)
        return
    try:
        os.rename(folder, trash / folder.name)
    except FileNotFoundError:
        pass  # another process removed it first
    except OSError as exc:
        log.warning("cannot remove %s: %s", folder, exc)
    shutil.rmtree(trash, ignore_errors=True)


def _remove_stale(parent: Path) -> None:
    cutoff = time.time() - _STALE_SECONDS
    for path in parent.glob(".*.tmp"):
        try:
            if path.is_dir() and path.stat().st_mtime < cutoff:
                shutil.rmtree(path, ignore_errors=True)
        except OSError:
            continue
