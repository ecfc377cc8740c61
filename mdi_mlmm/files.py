"""Atomic file writes: the one helper that writes a temporary file and renames it into place.

A reader (a resuming run, a progress display, a client reading a server's address) sees either
the old file or the whole new one, never half a file. The temporary file sits next to the target
(same file system, so the rename is atomic), carries the writer's process and thread in its name
(concurrent writers do not share one), and is removed if the write fails.
"""
from __future__ import annotations

import json
import os
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Optional, Union


def _tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")


@contextmanager
def atomic_open(path, mode: str = "w", *, perms: Optional[int] = None, fsync: bool = False,
                encoding: Optional[str] = None) -> Iterator:
    """``open(path, mode)`` on a temporary file that replaces ``path`` when the block ends without
    an exception (and is removed when it does not). mode: ``"w"`` or ``"wb"``; perms: the new
    file's permission bits (e.g. ``0o600``, set before anything is written); fsync: flush to disk
    before the rename (checkpoints that must survive a crash of the machine). Creates parent
    folders."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes whole files: mode 'w' or 'wb', not {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666 if perms is None else perms)
    try:
        if perms is not None:
            os.chmod(tmp, perms)   # whatever the umask
        with os.fdopen(fd, mode, encoding=None if "b" in mode else (encoding or "utf-8")) as fh:
            fd = None
            yield fh
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if fd is not None:
            os.close(fd)
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def write_text(path, text: str, **kw) -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_open` for ``perms``, ``fsync``)."""
    with atomic_open(path, "w", **kw) as fh:
        fh.write(text)
    return Path(path)


def write_bytes(path, data: Union[bytes, bytearray], **kw) -> Path:
    """Write ``data`` to ``path`` atomically."""
    with atomic_open(path, "wb", **kw) as fh:
        fh.write(data)
    return Path(path)


def write_json(path, obj, *, indent: Optional[int] = None, **kw) -> Path:
    """Write ``obj`` as JSON to ``path`` atomically."""
    return write_text(path, json.dumps(obj, indent=indent), **kw)


def write_with(path, writer: Callable, *, binary: bool = True, **kw) -> Path:
    """Atomically write what ``writer(fh)`` writes into the open file ``fh`` (for writers that
    take a file handle: ``np.save``, ``np.savetxt``, ``pickle.dump``...)."""
    with atomic_open(path, "wb" if binary else "w", **kw) as fh:
        writer(fh)
    return Path(path)


def write_if_changed(path, data: Union[bytes, str], **kw) -> bool:
    """Write ``data`` atomically unless ``path`` already holds exactly that; returns whether it wrote
    (keeps the modification time, and with it a build's up-to-date checks, of unchanged files)."""
    path = Path(path)
    raw = data.encode() if isinstance(data, str) else bytes(data)
    if path.is_file() and path.read_bytes() == raw:
        return False
    write_bytes(path, raw, **kw)
    return True


def publish_dir(tmp, out) -> Path:
    """Put the finished directory ``tmp`` (made by :func:`tempfile.mkdtemp` next to ``out``) in place
    of ``out``: given a normal directory's permissions (mkdtemp makes it 0700), renamed onto ``out``;
    an existing ``out`` is moved aside first and removed afterwards, so ``out`` is always either the
    old or the new directory, whole."""
    import shutil

    tmp, out = Path(tmp), Path(out)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(out)
    return out
