"""Writing outputs so that a crash or Ctrl-C never leaves a half-written file behind, and the
small JSON records (statistics, states, summaries) that go beside them."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path

from lhco_diffusion.errors import InputError


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike):
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    Works for files and directories alike: whatever the block creates at the temporary path is
    moved into place at the end, or deleted if the block raises.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.partial-{os.getpid()}")
    _remove(temporary)
    try:
        yield temporary
        if path.is_dir() and temporary.is_dir():
            shutil.rmtree(path)
        os.replace(temporary, path)
    finally:
        _remove(temporary)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists():
        path.unlink()


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
