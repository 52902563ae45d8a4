"""Write files atomically: a temporary file in the same folder, fsync, then rename.

A failure, Ctrl-C, SIGTERM or SIGHUP at any point leaves either the old file or none, never a
partial one (the CLI turns SIGTERM and SIGHUP into an exception, so the same cleanup runs).

What an output path may be (the rule of zstd and gzip, written in docs/SECURITY.md):

- a new name in an existing folder: created;
- an existing regular file: replaced atomically, only when overwriting was asked for (-f);
- a character device or a FIFO (``/dev/null``, a named pipe): written through, never replaced;
- a symbolic link, a folder, a block device, a socket: refused, with or without -f.
"""

from __future__ import annotations

import io
import os
import signal
import tempfile
import threading


class OutputExists(FileExistsError):
    """The output exists and overwriting was not asked for."""


class UnsafeOutput(OSError):
    """An output path that must not be written or replaced (see the module docstring)."""


def check_target(path: str, overwrite: bool) -> str:
    """How ``path`` would be written: "create", "replace" or "stream" (write through).

    Raises:
        OutputExists: a regular file exists and ``overwrite`` is false.
        UnsafeOutput: a symbolic link, folder, block device or socket; or a missing folder.
    """
    import stat

    try:
        st = os.lstat(path)
    except FileNotFoundError:
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            raise UnsafeOutput(f"folder {folder} does not exist") from None
        return "create"
    mode = st.st_mode
    if stat.S_ISLNK(mode):
        raise UnsafeOutput(f"output {path} is a symbolic link; give its target instead")
    if stat.S_ISCHR(mode) or stat.S_ISFIFO(mode):
        return "stream"
    if stat.S_ISDIR(mode):
        raise UnsafeOutput(f"output {path} is a folder")
    if not stat.S_ISREG(mode):
        raise UnsafeOutput(f"output {path} is not a regular file; refusing to replace it")
    if not overwrite:
        raise OutputExists(f"{path} already exists (use -f to overwrite)")
    return "replace"


def write_all(fd: int, data) -> None:
    """Write every byte to ``fd``, waiting on a non-blocking descriptor, or raise OSError."""
    import select

    view = memoryview(data).cast("B")
    while view:
        try:
            n = os.write(fd, view[: 1 << 20])
        except BlockingIOError:
            select.select([], [fd], [])
            continue
        if n <= 0:
            raise OSError(f"short write ({n} bytes)")
        view = view[n:]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_LIVE: set[str] = set()  # temporary files being written, for remove_temporaries()
_SIGNALS = {getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n)}
_CREATING = threading.Lock()  # held while a temporary file is being created (any thread)
_ENDING = False  # set by remove_temporaries: no temporary file is created after it


def remove_temporaries(final: bool = False) -> None:
    """Unlink every temporary file being written (the CLI's signal handler calls this with
    ``final`` just before it ends the process; best effort, never raises). It first waits, up
    to 5 s, for a creation in progress in another thread (an ``open()`` on a slow file system),
    and with ``final`` stops any later one, so that a file created at the moment of the signal
    is removed too."""
    global _ENDING
    if final:
        _ENDING = True  # first: no thread creates or publishes a file from now on
    got = _CREATING.acquire(timeout=5)
    try:
        for tmp in list(_LIVE):
            try:
                os.unlink(tmp)
            except OSError:
                pass
    finally:
        if got:
            _CREATING.release()


def _mkstemp(folder: str) -> tuple[int, str]:
    """Create a new temporary file in ``folder``; its name is registered in _LIVE *before* the
    file is created, under a lock that the signal handler waits for, and with the CLI's signals
    blocked in the main thread (where the handler runs), so that a signal at any moment, in any
    thread, finds every temporary file that exists."""
    main = threading.current_thread() is threading.main_thread()
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS) if main else None
    try:
        with _CREATING:
            if _ENDING:
                raise InterruptedError("the process is ending")
            for _ in range(100):
                tmp = os.path.join(folder, f".maxswitch-{next(tempfile._get_candidate_names())}.tmp")
                _LIVE.add(tmp)  # before the file exists
                try:
                    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
                except FileExistsError:
                    _LIVE.discard(tmp)
                    continue
                except BaseException:
                    _LIVE.discard(tmp)
                    raise
                return fd, tmp
            raise FileExistsError("no free temporary file name")
    finally:
        if old is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _publishing() -> None:
    """Refuse to put a finished temporary file in place once a signal is ending the process
    (the handler may be waiting for another thread's creation meanwhile)."""
    if _ENDING:
        raise InterruptedError("the process is ending")


def write_atomic(path: str, data, overwrite: bool = False) -> None:
    """Write ``data`` to ``path`` atomically: bytes, an iterable of byte strings written in turn,
    or a callable that writes into the (seekable) file object it is given, as Pillow's ``save``
    does (then an output of hundreds of MB is not first built in memory).

    Raises:
        OutputExists: ``path`` exists and ``overwrite`` is false.
        UnsafeOutput: ``path`` is a symbolic link or another file that must not be replaced.
        OSError: the folder is missing or not writable, the disk is full, ...
    """
    if callable(data):
        writer = data
    else:
        chunks = [data] if isinstance(data, (bytes, bytearray, memoryview)) else data

        def writer(f):
            for piece in chunks:
                f.write(piece)

    if check_target(path, overwrite) == "stream":
        fd = os.open(path, os.O_WRONLY)
        try:
            if callable(data):  # the writer may seek: build the bytes first
                buf = io.BytesIO()
                data(buf)
                chunks = [buf.getbuffer()]
            for piece in chunks:
                write_all(fd, piece)
        finally:
            os.close(fd)
        return
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = _mkstemp(folder)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
        with os.fdopen(fd, "wb") as f:
            writer(f)
            f.flush()
            os.fsync(f.fileno())
        _publishing()
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
    finally:
        _LIVE.discard(tmp)
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
