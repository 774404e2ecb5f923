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


def publish_files(tmp: PathLike, final: PathLike) -> list:
    """Move every file of folder ``tmp`` into folder ``final`` (created if needed), each with ``os.replace`` and the
    umask's mode, so that each name holds either its old or its new file; returns the names moved."""
    src, dst = Path(tmp), Path(final)
    dst.mkdir(parents=True, exist_ok=True)
    names = sorted(p.name for p in src.iterdir() if p.is_file())
    for name in names:
        os.chmod(src / name, FILE_MODE)
        os.replace(src / name, dst / name)
    _fsync_dir(dst)
    return names


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


class OutputError(RuntimeError):
    """An output folder that cannot be written, or a cache that cannot be trusted; one line naming the path and why."""


def writable_output_dir(path: PathLike, what: str = "--out") -> Path:
    """Create ``path`` (and parents) if needed and check that a file can be written there, before any work is done;
    OutputError naming the path and the reason otherwise.

    >>> import tempfile, pathlib
    >>> writable_output_dir(pathlib.Path(tempfile.mkdtemp()) / "run").is_dir()
    True
    """
    out = Path(path)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=out, prefix=".write-check.", delete=True)
        probe.close()
    except OSError as exc:
        raise OutputError(f"{what} {out}: cannot write there ({exc.strerror or exc})") from None
    return out


def untrusted_folder(path: PathLike) -> str:
    """Why another user could change what ``path`` holds ('' when only this user can): the folder is not this
    user's, or it, or a folder above it without the sticky bit, is writable by group or others."""
    p = Path(path).absolute()
    uid = os.getuid() if hasattr(os, "getuid") else None
    if p.exists():
        st = p.stat()
        if uid is not None and st.st_uid != uid:
            return f"{p} belongs to user id {st.st_uid}, not to this user ({uid})"
        if st.st_mode & 0o022:
            return f"{p} is writable by {'group and others' if st.st_mode & 0o002 else 'its group'} (mode {st.st_mode & 0o777:o})"
    for parent in p.parents:
        if not parent.exists():
            continue
        st = parent.stat()
        if st.st_mode & 0o002 and not st.st_mode & 0o1000:
            return f"{parent}, above it, is writable by others without the sticky bit (mode {st.st_mode & 0o7777:o})"
    return ""


_cache_warned: set = set()   # cache roots already warned about (once per process)


def default_cache_dir() -> Path:
    """``$ROS2_MONODEPTH_CACHE``, else ``$XDG_CACHE_HOME/ros2_monodepth``, else ``~/.cache/ros2_monodepth``. What
    is cached there (exported graphs, int8 graphs, engines) is run as it is, so a folder another user can write is
    not used: the user's own cache is, with a warning (OutputError when that one is not private either)."""
    own = Path(os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "ros2_monodepth"))
    chosen = Path(os.environ.get("ROS2_MONODEPTH_CACHE") or own)
    problem = untrusted_folder(chosen)
    if not problem:
        return chosen
    if chosen != own and not untrusted_folder(own):
        if str(chosen) not in _cache_warned:
            _cache_warned.add(str(chosen))
            import logging

            logging.getLogger("ros2_monodepth.cache").warning(
                "cache %s is not used: %s, so another user could swap the graphs this process runs; using %s instead "
                "(make the folder yours with mode 755 or 700 to use it)", chosen, problem, own)
        return own
    raise OutputError(f"cache {chosen} cannot be trusted: {problem}; set ROS2_MONODEPTH_CACHE to a folder of your own")
