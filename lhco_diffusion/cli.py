"""What every ``python -m lhco_diffusion.<step>`` entry point shares.

Each entry point builds its parser with ``parser()``, loads the configuration with
``load_config(args)`` and wraps its body in ``run(body)``: the one error boundary of the package.

    exit 0    done
    exit 2    bad input, one sentence on stderr: an ``InputError`` (raised where the file or key
              is known), or an operating-system refusal that names its file (missing, a
              directory, not a directory, already there, permission denied)
    exit 3    the training diverged (``TrainingDiverged``)
    exit 130  interrupted (Ctrl-C); the sentence says what was kept
    exit 1    anything else is a bug and keeps its traceback

Overwrite policy, the same for every command: an existing output is never replaced unless the
command is told to: ``--resume`` completes it (train, sample), ``--overwrite`` replaces it
(prepare, classify, evaluate, likelihood; see ``files.refuse_existing``).
"""
from __future__ import annotations

import argparse
import sys
import typing

from lhco_diffusion import config as config_module
from lhco_diffusion.errors import InputError, TrainingDiverged

DIVERGED_EXIT_CODE = 3
INTERRUPTED_EXIT_CODE = 130
# operating-system errors a user causes with a path argument; each names its file
_USER_OS_ERRORS = (FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError, PermissionError)


def parser(description: str, config_required: bool = True, overwrite: bool = False) -> argparse.ArgumentParser:
    """An argument parser with the shared ``--config FILE`` and repeatable ``--set k=v``
    (and ``--overwrite`` for commands whose outputs are replaced only when asked)."""
    result = argparse.ArgumentParser(description=description)
    if overwrite:
        result.add_argument("--overwrite", action="store_true", help="replace an existing output")
    result.add_argument("--config", required=config_required, help="YAML run configuration")
    result.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one configuration value (repeatable), e.g. --set training.epochs=10",
    )
    return result


def load_config(args: argparse.Namespace) -> config_module.Config:
    """The configuration named by ``--config`` with every ``--set`` applied."""
    return config_module.load(args.config, args.overrides)


def check_at_least(option: str, value: int | None, minimum: int) -> None:
    """``InputError`` unless a numeric command-line option is unset or at least ``minimum``."""
    if value is not None and value < minimum:
        raise InputError(f"{option} must be at least {minimum}, not {value}")


def run(body: typing.Callable[[], int | None]) -> int:
    """Call ``body`` and return its exit code (see the module docstring for the codes).

    A ``KeyboardInterrupt`` raised with a message (``KeyboardInterrupt("... kept ...")``) has
    that message printed; a bare one means every output is complete or absent (written atomically).
    """
    try:
        return body() or 0
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except _USER_OS_ERRORS as error:
        print(f"error: {_sentence(error)}", file=sys.stderr)
        return 2
    except TrainingDiverged as error:
        print(f"error: {error}", file=sys.stderr)
        return DIVERGED_EXIT_CODE
    except KeyboardInterrupt as error:
        kept = str(error) or "every output is either complete or absent (each is written whole or not at all)"
        print(f"interrupted: {kept}", file=sys.stderr)
        return INTERRUPTED_EXIT_CODE


def _sentence(error: OSError) -> str:
    """One sentence from an operating-system error: the file and the reason."""
    if error.filename is None:
        return str(error)
    reason = (error.strerror or type(error).__name__).lower()
    return f"cannot use {error.filename}: {reason}"
