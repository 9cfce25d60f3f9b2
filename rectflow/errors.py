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


class PlanMismatch(UserError):
    """A coupling dataset was started with other settings; ``names`` are the options."""

    def __init__(self, out, names: list[str]):
        self.out, self.names = out, list(names)
        super().__init__(self.text(self.names))

    def text(self, names: list[str]) -> str:
        return (f"{self.out} was started with different {', '.join(names)}; rerun with the "
                "same arguments to resume, or pass overwrite to start again")


class OptionError(UserError):
    """An option's value is out of its bounds or of the wrong type. ``str(e)`` names the
    option in Python terms (``batch_size``); :meth:`for_cli` names the command-line flag."""

    def __init__(self, name: str, flag: str, problem: str):
        super().__init__(f"{name} {problem}")
        self.name, self.flag, self.problem = name, flag, problem

    def for_cli(self) -> str:
        return f"{self.flag} {self.problem}"


class OutputError(UserError):
    """An output folder cannot be used as asked: it holds data rectflow must not touch, it is
    (or lies inside or contains) an input, the working or home folder or a filesystem root, or
    it is not writable."""


class OutputLocked(OutputError):
    """Another process is writing the same output folder."""


class ResourceError(UserError):
    """The machine ran out of something: disk space, quota, memory, permissions, a writable
    file system. ``errno`` is the OS error number when there is one."""

    def __init__(self, message: str, errno: int | None = None):
        super().__init__(message)
        self.errno = errno


class StageInterrupted(Exception):
    """The user stopped a stage with SIGINT or SIGTERM. Not a user error: the stage stopped at a
    step boundary (``step``) and ``resume`` is the command that continues it, when there is one.
    ``exit_code`` is the shell convention 128 + signal number (130 for SIGINT, 143 SIGTERM)."""

    def __init__(self, signum: int, step: int | None = None, resume: str | None = None):
        import signal
        self.signum = int(signum)
        self.step = step
        self.resume = resume
        try:
            name = signal.Signals(self.signum).name
        except ValueError:
            name = f"signal {self.signum}"
        text = f"interrupted by {name}"
        if step is not None:
            text += f" at step {step}; a snapshot of that step is saved"
        if resume:
            text += f"; resume with: {resume}"
        super().__init__(text)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

class SolverError(UserError, ValueError):
    """An ODE solve cannot go on or was asked for something impossible: bad tolerances or
    steps, a state that became NaN/inf, a step size below the floor, too many evaluations."""
