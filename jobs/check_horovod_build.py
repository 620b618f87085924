"""Fail unless Horovod was built for a GPU cluster: TensorFlow, the MPI controller and NCCL ticked.

    python jobs/check_horovod_build.py              # runs `horovodrun --check-build` of this venv
    python jobs/check_horovod_build.py OUTPUT.txt   # checks a saved output instead

`make install-gpu` runs it last. A Horovod without MPI cannot join the tasks `srun` starts (each
becomes rank 0 of 1); one without NCCL reduces GPU tensors through host memory. Exit 0 with one
line saying so, or 1 with one line naming what is missing and how to rebuild.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

COMMAND = ("horovodrun", "--check-build")
# (section of the --check-build listing, the entry that must be ticked there)
REQUIRED = (("Available Frameworks", "TensorFlow"), ("Available Controllers", "MPI"),
            ("Available Tensor Operations", "NCCL"))
_ENTRY = re.compile(r"\[([ Xx])\]\s+(\S+)")


def ticked(listing: str) -> dict[str, set[str]]:
    """The ticked entries of each section of a ``horovodrun --check-build`` listing.

    Sections are lines ending in ':' (``Available Controllers:``), entries ``[X] NAME`` below
    them; anything else (TensorFlow's log lines, the version header) is ignored. MPI appears
    both as a controller and as a tensor operation, hence per section.
    """
    sections: dict[str, set[str]] = {}
    section = None
    for line in listing.splitlines():
        text = line.strip()
        entry = _ENTRY.fullmatch(text)
        if entry and section is not None:
            if entry.group(1) in "Xx":
                sections[section].add(entry.group(2))
        elif text.endswith(":"):
            section = text[:-1]
            sections.setdefault(section, set())
    return sections


def missing(listing: str) -> list[str]:
    """The required entries that ``listing`` does not tick, as 'NAME (section)'."""
    sections = ticked(listing)
    return [f"{name} ({section.removeprefix('Available ').lower()})" for section, name in REQUIRED
            if name not in sections.get(section, set())]


def _run_check_build() -> str:
    beside_python = Path(sys.executable).with_name(COMMAND[0])
    program = str(beside_python) if beside_python.exists() else shutil.which(COMMAND[0])
    if program is None:
        sys.exit("error: horovodrun not found: Horovod is not installed in this environment")
    result = subprocess.run([program, *COMMAND[1:]], capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"error: {' '.join(COMMAND)} failed ({result.returncode}): {result.stderr.strip()[-500:]}")
    return result.stdout


def main(argv: list[str]) -> int:
    listing = Path(argv[0]).read_text() if argv else _run_check_build()
    absent = missing(listing)
    if absent:
        print(f"error: Horovod lacks {', '.join(absent)}; load the MPI, CUDA and NCCL modules and run "
              "`make install-gpu` again (README: On a GPU cluster)", file=sys.stderr)
        return 1
    print("Horovod build: TensorFlow, MPI and NCCL ticked")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
