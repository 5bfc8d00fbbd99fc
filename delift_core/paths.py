"""Which local folders the app may read data from and write exports to.

A shared deployment lets every user type a path on the server; these checks keep such paths
inside folders the administrator chose. Environment variables, read at each check:

  DELIFT_DATA_ROOTS   folders local data paths may lie in, separated by os.pathsep (":" on
                      Linux and macOS). Default: the working directory and ~/data (the user's
                      home data folder).
  DELIFT_EXPORT_ROOT  the folder exports may be written in (subfolders included). Default: ./out
                      under the working directory.
  DELIFT_LOCAL_PATHS  "off" turns loading from local paths off entirely (uploads only); "on",
                      the default, allows paths under the data roots.

Every path is resolved (symbolic links followed, ".." removed) before it is compared with the
roots, which are resolved the same way. A path outside them gives a PathError whose message is
the same whether or not the path exists. The command line does not use these checks: there the
user runs the program on their own files.
"""

from __future__ import annotations

import os
from pathlib import Path

from delift_core.errors import ConfigError, DataError, PathError
from delift_core.export import confined_path

DATA_ROOTS_ENV = "DELIFT_DATA_ROOTS"
EXPORT_ROOT_ENV = "DELIFT_EXPORT_ROOT"
LOCAL_PATHS_ENV = "DELIFT_LOCAL_PATHS"
DEFAULT_EXPORT_ROOT = "out"

_ON = {"on", "1", "true", "yes"}
_OFF = {"off", "0", "false", "no"}


def _resolve(path: str | os.PathLike[str]) -> Path:
    # strict=False: a missing path resolves as far as it exists, so the check below treats
    # missing and existing paths alike.
    return Path(path).expanduser().resolve()


def local_paths_enabled() -> bool:
    """False when $DELIFT_LOCAL_PATHS is "off" (or 0, false, no); True when unset or "on"."""
    value = os.environ.get(LOCAL_PATHS_ENV, "").strip().lower()
    if not value or value in _ON:
        return True
    if value in _OFF:
        return False
    raise ConfigError(f"${LOCAL_PATHS_ENV} must be 'on' or 'off'; got {value!r}")


def data_roots() -> tuple[Path, ...]:
    """The resolved folders local data paths may lie in ($DELIFT_DATA_ROOTS, else the working
    directory and ~/data)."""
    value = os.environ.get(DATA_ROOTS_ENV, "")
    entries = [entry for entry in value.split(os.pathsep) if entry.strip()]
    if not entries:
        entries = [os.getcwd(), str(Path.home() / "data")]
    return tuple(dict.fromkeys(_resolve(entry.strip()) for entry in entries))


def export_root() -> Path:
    """The resolved folder exports may be written in ($DELIFT_EXPORT_ROOT, else ./out)."""
    value = os.environ.get(EXPORT_ROOT_ENV, "").strip()
    return _resolve(value or DEFAULT_EXPORT_ROOT)


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _within(path: str | os.PathLike[str], roots: tuple[Path, ...]) -> Path | None:
    """`path` resolved when it lies under one of `roots`; None when it does not or cannot be
    resolved (a NUL byte, a link loop, an unknown ~user)."""
    try:
        target = _resolve(path)
    except (OSError, ValueError, RuntimeError):
        return None
    return target if any(_inside(target, root) for root in roots) else None


def check_data_path(path: str | os.PathLike[str]) -> Path:
    """The resolved `path`, when local paths are on and it lies under a data root.

    A folder (a Hugging Face save_to_disk folder) must not hold links to files outside the
    roots either. PathError otherwise, naming the path as given. A missing path under a root
    passes: the loader then says it is not found.
    """
    label = os.fspath(path)
    if not local_paths_enabled():
        raise PathError(
            f"loading from a local path is turned off here (${LOCAL_PATHS_ENV}=off); upload the"
            " file instead",
            path=label,
        )
    if not label.strip():
        raise DataError("give a file or folder path")
    roots = data_roots()
    refused = PathError(
        "is outside the folders this app may read data from"
        f" ({', '.join(map(str, roots))}; set by ${DATA_ROOTS_ENV}). Move the file into one of"
        " them, or upload it",
        path=label,
    )
    target = _within(label, roots)
    if target is None:
        raise refused
    if target.is_dir():
        try:
            children = list(target.iterdir())
        except OSError:  # unreadable: the loader reports it
            children = []
        for child in children:
            if child.is_symlink() and _within(child, roots) is None:
                raise refused
    return target


def check_export_path(path: str | os.PathLike[str]) -> Path:
    """The resolved `path`, when it lies under the export root; PathError otherwise."""
    label = os.fspath(path)
    root = export_root()
    refused = PathError(
        f"is outside the export folder {root} (set by ${EXPORT_ROOT_ENV}); choose a folder"
        " inside it",
        path=label,
    )
    target = _within(label, (root,))
    if target is None:
        raise refused
    return target


def export_target(folder: str | os.PathLike[str], name: str) -> Path:
    """`folder/name` resolved, where `name` is a plain file name and `folder` lies under the
    export root (ConfigError for a name that leaves the folder, PathError for a folder outside
    the root)."""
    check_export_path(folder)
    return check_export_path(confined_path(folder, name))
