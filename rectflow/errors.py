"""Exceptions that mean "the user asked for something we cannot do".

The CLI turns a :class:`UserError` into one line on stderr and exit code 2; anything else is a
bug and keeps its traceback.
"""


class UserError(Exception):
    """Bad input from the user: a wrong flag value, a missing file, mismatched shapes."""


class DataError(UserError):
    """A dataset could not be found, read or validated."""


class CheckpointError(UserError):
    """A checkpoint or pairs folder is missing, malformed or does not match."""


class TrainingDiverged(Exception):
    """The loss became NaN or infinite. Not a user error, but reported without a traceback."""

    def __init__(self, step: int, value: float, kept: str = "the last good checkpoint is kept"):
        super().__init__(f"loss became {value} at step {step}; {kept}")
        self.step = step
        self.value = value


class SolverError(UserError, ValueError):
    """An ODE solve cannot go on or was asked for something impossible: bad tolerances or
    steps, a state that became NaN/inf, a step size below the floor, too many evaluations."""
