"""Writing outputs so that a crash, Ctrl-C or a kill never leaves a half-written file behind, and
the small JSON records (statistics, states, summaries) that go beside them.

    with atomic_output("dir/out.h5") as temporary:      # write to dir/.out.h5.partial-<host>-<pid>
        write(temporary)                                # renamed onto dir/out.h5 only on success

Files are replaced with one ``os.replace``. A directory (a checkpoint) cannot be, so it is
swapped in three steps that always leave one valid copy: old -> ``.NAME.previous``, new -> NAME,
then the backup is deleted. ``recover(path)`` finishes or undoes a swap that was killed
midway; ``atomic_output`` calls it first, and so should a reader that resumes from ``path``.
Partial outputs of processes of this host that are no longer alive are deleted on the next write
of the same path.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import socket
from pathlib import Path

from lhco_diffusion.errors import InputError

_UNWRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS)


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike):
    """Yield a temporary path beside ``path``; move it onto ``path`` only if the block succeeds.

    Works for files and directories alike: whatever the block creates at the temporary path is
    moved into place at the end, or deleted if the block raises. Parent directories this call
    had to create are removed again when the block fails. ``InputError`` if the parent cannot
    be created or written.
    """
    path = Path(path)
    created = writable_directory(path.parent)
    recover(path)
    _remove_debris(path)
    temporary = _partial_name(path, os.getpid())
    _remove(temporary)
    try:
        yield temporary
        _move_into_place(temporary, path)
    except BaseException:
        _remove(temporary)
        _remove_empty(created)
        raise


def writable_directory(directory: str | os.PathLike) -> list[Path]:
    """Create ``directory`` (and its parents) if needed; return the directories created,
    deepest first. ``InputError`` naming the directory if it is a file or cannot be written."""
    directory = Path(directory)
    created = []
    for folder in (directory, *directory.parents):
        if folder.exists() or folder.is_symlink():
            break
        created.append(folder)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise InputError(f"{directory} cannot be an output directory: a file of that name is in the way") from None
    except OSError as error:
        if error.errno not in _UNWRITABLE:
            raise
        raise InputError(f"cannot create the output directory {directory}: {error.strerror}") from None
    if not os.access(directory, os.W_OK | os.X_OK):
        raise InputError(f"cannot write into {directory}: permission denied")
    return created


def recover(path: str | os.PathLike) -> None:
    """Complete a directory swap that was killed midway: keep the new ``path`` if it made it into
    place, else put the previous copy back."""
    path = Path(path)
    backup = _backup_name(path)
    if not (backup.exists() or backup.is_symlink()):
        return
    if path.exists():
        _remove(backup)
    else:
        os.replace(backup, path)


def _move_into_place(temporary: Path, path: Path) -> None:
    if not (temporary.is_dir() and path.is_dir()):
        os.replace(temporary, path)  # atomic for a file (or onto a missing path)
        return
    backup = _backup_name(path)
    os.replace(path, backup)
    os.replace(temporary, path)
    shutil.rmtree(backup)


def _partial_name(path: Path, pid: int) -> Path:
    return path.with_name(f".{path.name}.partial-{socket.gethostname()}-{pid}")


def _backup_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.previous")


def _remove_debris(path: Path) -> None:
    """Delete partial outputs of ``path`` left by killed processes of this host."""
    prefix = _partial_name(path, 0).name[:-1]
    for partial in path.parent.glob(f"{_glob_escape(prefix)}*"):
        pid = partial.name[len(prefix):]
        if pid.isdigit() and not _alive(int(pid)):
            _remove(partial)


def _glob_escape(text: str) -> str:
    """``text`` with the glob wildcards ``*?[`` matched literally."""
    return "".join(f"[{character}]" if character in "*?[" else character for character in text)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _remove_empty(directories: list[Path]) -> None:
    for directory in directories:
        with contextlib.suppress(OSError):
            directory.rmdir()


def write_json(path: str | os.PathLike, values) -> None:
    """Write ``values`` (plain lists, dicts, numbers, strings) as indented JSON, atomically."""
    with atomic_output(path) as temporary:
        Path(temporary).write_text(json.dumps(values, indent=2) + "\n")


def read_json(path: str | os.PathLike, what: str):
    """The JSON content of ``path``; ``InputError`` naming ``what`` if it is missing or not JSON."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} {path} does not exist")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InputError(f"{path} is not a {what} JSON file") from None


def refuse_existing(path: str | os.PathLike, overwrite: bool) -> None:
    """The overwrite policy: ``InputError`` if ``path`` exists and ``--overwrite`` was not given."""
    if os.path.lexists(path) and not overwrite:
        raise InputError(f"{path} exists; pass --overwrite to replace it or choose another output")
