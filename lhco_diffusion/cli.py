"""What every ``python -m lhco_diffusion.<step>`` entry point shares.

Each entry point builds its parser with ``parser()``, loads the configuration with
``load_config(args)`` and wraps its body in ``run(body, args)``, which turns the package's
``InputError`` (and a missing file) into one sentence on stderr and exit code 2.
"""
from __future__ import annotations

import argparse
import sys
import typing

from lhco_diffusion import config as config_module
from lhco_diffusion.errors import InputError, TrainingDiverged

DIVERGED_EXIT_CODE = 3


def parser(description: str, config_required: bool = True) -> argparse.ArgumentParser:
    """An argument parser with the shared ``--config FILE`` and repeatable ``--set k=v``."""
    result = argparse.ArgumentParser(description=description)
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


def run(body: typing.Callable[[], int | None]) -> int:
    """Call ``body``; map bad input to one sentence on stderr and exit code 2, a diverged
    training to one sentence and exit code 3."""
    try:
        return body() or 0
    except (InputError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except TrainingDiverged as error:
        print(f"error: {error}", file=sys.stderr)
        return DIVERGED_EXIT_CODE
    except KeyboardInterrupt:
        print("interrupted: completed outputs are kept, partial ones removed", file=sys.stderr)
        return 130
