"""The one exception type for bad user input (files, configs, arguments).

Library code raises ``InputError`` with a single sentence that says what is wrong and, where it
can, what to do; the command-line entry points print that sentence and exit with code 2.
"""


class InputError(ValueError):
    """Input that cannot be used: a missing file, a wrong layout, NaNs, an empty region, ..."""


class TrainingDiverged(RuntimeError):
    """The training loss stopped being finite; the message says where and what was kept."""
