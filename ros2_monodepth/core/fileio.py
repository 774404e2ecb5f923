"""Files written so that a reader never sees half of one: atomic file and folder writes, content hashes, and the
cache folder.

Owns the one rule every writer in the project follows (checkpoints, training state, exported graphs, int8
graphs, TensorRT engines, caches): write into a temporary sibling, flush it to disk, then ``os.replace`` it onto
the final name, so that a kill at any instant leaves either the old or the new file. Temporary files are made
with ``tempfile`` (mode 0600 / 0700); what is renamed into place gets the mode the user's umask gives a new file
(0644 / 0755 with the usual 022), so a node running as another user can read what training wrote.

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> atomic_write_text("hello", d / "a.txt")
    >>> (d / "a.txt").read_text()
    'hello'
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator, Union

PathLike = Union[str, "os.PathLike[str]"]


def _current_umask() -> int:
    mask = os.umask(0o022)   # the only portable way to read it is to set it and put it back
    os.umask(mask)
    return mask


_UMASK = _current_umask()
FILE_MODE = 0o666 & ~_UMASK     # what open() gives a new file
DIR_MODE = 0o777 & ~_UMASK      # what mkdir() gives a new folder

# Suffix of every temporary name made here: ``clean_leftovers`` removes what a killed writer left.
TMP_MARK = ".tmp"


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(str(directory), os.O_RDONLY)
    except OSError:   # not every platform can open a folder
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: PathLike, write: Callable[[Any], None], binary: bool = True) -> None:
    """Write ``path`` through ``write(file object)`` into a temporary sibling, then rename it into place."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=str(final.parent), prefix=final.name + ".", suffix=TMP_MARK)
    try:
        with os.fdopen(fd, "wb" if binary else "w") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, final)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_dir(final.parent)


def atomic_write_bytes(data: bytes, path: PathLike) -> None:
    atomic_write(path, lambda f: f.write(data))


def atomic_write_text(text: str, path: PathLike) -> None:
    atomic_write(path, lambda f: f.write(text), binary=False)


def atomic_torch_save(obj: Any, path: PathLike) -> None:
    """``torch.save`` through ``atomic_write``."""
    import torch

    atomic_write(path, lambda f: torch.save(obj, f))


def temporary_dir(final: PathLike) -> Path:
    """A temporary sibling folder of ``final`` to build into (``publish_dir`` renames it into place)."""
    target = Path(final)
    target.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=str(target.parent), prefix=target.name + ".", suffix=TMP_MARK))


def publish_dir(tmp: Path, final: PathLike) -> None:
    """Give ``tmp`` (from ``temporary_dir``) and everything in it the umask's modes, then rename it onto ``final``
    (which must not exist: ``os.replace`` cannot replace a non-empty folder)."""
    for root, dirs, files in os.walk(tmp):
        for d in dirs:
            os.chmod(os.path.join(root, d), DIR_MODE)
        for name in files:
            os.chmod(os.path.join(root, name), FILE_MODE)
    os.chmod(tmp, DIR_MODE)
    os.replace(tmp, final)
    _fsync_dir(Path(final).parent)


def build_cache_dir(target: PathLike, build: Callable[[Path], object]) -> Path:
    """Fill cache folder ``target`` with ``build(tmp)`` in a temporary sibling and rename it into place, so that a
    reader never sees half a folder; when another process finished first, its folder is kept."""
    final = Path(target)
    tmp = temporary_dir(final)
    try:
        build(tmp)
        if final.exists():
            shutil.rmtree(tmp)
        else:
            publish_dir(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def clean_leftovers(directory: PathLike, prefix: str) -> int:
    """Remove temporary files and folders named ``<prefix>.*.tmp`` in ``directory`` (a killed writer's);
    returns how many were removed."""
    d = Path(directory)
    if not d.is_dir():
        return 0
    removed = 0
    for entry in d.iterdir():
        if entry.name.startswith(prefix + ".") and entry.name.endswith(TMP_MARK):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed += 1
    return removed


def file_sha256(path: PathLike) -> str:
    """Hex SHA-256 of a file's content, read in 1 MB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def iter_files(directory: PathLike, suffix: str) -> Iterator[Path]:
    """Files in ``directory`` (not below it) whose names end with ``suffix``, sorted by name."""
    return iter(sorted(p for p in Path(directory).iterdir() if p.is_file() and p.name.endswith(suffix)))


def default_cache_dir() -> Path:
    """``$ROS2_MONODEPTH_CACHE``, else ``$XDG_CACHE_HOME/ros2_monodepth``, else ``~/.cache/ros2_monodepth``."""
    base = os.environ.get("ROS2_MONODEPTH_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "ros2_monodepth")
    return Path(base)
