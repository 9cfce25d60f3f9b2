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

    def __init__(self, step: int, value: float, kept: str = "the last good checkpoint is kept",
                 what: str = "loss"):
        became = "became non-finite" if what == "weights" else f"became {value}"
        super().__init__(f"{what} {became} at step {step}; {kept}")
        self.step = step
        self.value = value


class OptionError(UserError):
    """An option's value is out of its bounds or of the wrong type. ``str(e)`` names the
    option in Python terms (``batch_size``); :meth:`for_cli` names the command-line flag."""

    def __init__(self, name: str, flag: str, problem: str):
        super().__init__(f"{name} {problem}")
        self.name, self.flag, self.problem = name, flag, problem

    def for_cli(self) -> str:
        return f"{self.flag} {self.problem}"


class StageInterrupted(Exception):
    """A stage was stopped by Ctrl-C or SIGTERM after saving what it had: ``step`` is the last
    step kept (training) and ``out`` the folder to resume."""

    def __init__(self, step: int, out: str, signal: str = "SIGINT"):
        super().__init__(f"interrupted ({signal}) after step {step}; saved in {out}")
        self.step, self.out, self.signal = step, out, signal
