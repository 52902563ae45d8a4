"""Write files atomically: a temporary file in the same folder, fsync, then rename.

A failure or Ctrl-C at any point leaves either the old file or none, never a partial one.
"""

from __future__ import annotations

import os
import tempfile


class OutputExists(FileExistsError):
    """The output exists and overwriting was not asked for."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path: str, data: bytes, overwrite: bool = False) -> None:
    """Write ``data`` to ``path`` atomically.

    Raises:
        OutputExists: ``path`` exists and ``overwrite`` is false.
        OSError: the folder is missing or not writable, the disk is full, ...
    """
    if not overwrite and os.path.lexists(path):
        raise OutputExists(f"{path} already exists (use -f to overwrite)")
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".maxswitch-", suffix=".tmp", dir=folder)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if not overwrite:
            # link() fails if the target appeared meanwhile: no race with another writer
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise OutputExists(f"{path} already exists (use -f to overwrite)") from None
            except OSError:
                if os.path.lexists(path):
                    raise OutputExists(f"{path} already exists (use -f to overwrite)") from None
                os.replace(tmp, path)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
        else:
            os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_dir(folder)


def _fsync_dir(folder: str) -> None:
    """Make the rename durable (best effort: some file systems refuse fsync on folders)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
