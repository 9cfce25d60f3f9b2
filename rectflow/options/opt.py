"""One option: its name, type, default, bounds and help, and the check of a given value
(:meth:`Opt.check`), which names the option in Python terms or, from the CLI, by its flag."""
from __future__ import annotations

import math
import types
import typing
from dataclasses import dataclass
from typing import Any

from ..core.path import TIME_DISTS, TimeDist
from ..errors import OptionError

BIG = 10**9


@dataclass(frozen=True)
class Opt:
    name: str
    type: Any                        # int, float, str, bool, TimeDist, tuple (of ints), or X | None
    default: Any
    help: str
    lo: float | None = None          # inclusive lower bound
    hi: float | None = None          # inclusive upper bound
    above: float | None = None       # exclusive lower bound
    below: float | None = None       # exclusive upper bound
    choices: tuple | None = None
    flag: str | None = None          # CLI flag when not --name-with-dashes
    short: str | None = None         # e.g. "-n"
    off: str | None = None           # a boolean's "off" flag when not --no-<name>

    @property
    def cli_flag(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")

    @property
    def base_type(self):
        args = typing.get_args(self.type)
        if typing.get_origin(self.type) in (typing.Union, types.UnionType):
            return next(a for a in args if a is not type(None))
        return self.type

    @property
    def nullable(self) -> bool:
        return type(None) in typing.get_args(self.type)

    def fail(self, problem: str) -> OptionError:
        return OptionError(self.name, self.cli_flag, problem)

    def check(self, value):
        """``value`` converted to this option's type and checked against its bounds."""
        if value is None:
            if self.nullable:
                return None
            raise self.fail("must be given")
        t = self.base_type
        if t is TimeDist:
            return _time_dist(self, value)
        if t is tuple:
            if isinstance(value, str):
                value = [s for s in value.split(",") if s.strip()]
            try:
                out = tuple(sorted({int(v) for v in value if not isinstance(v, bool)}))
            except (TypeError, ValueError):
                raise self.fail(f"must be a list of whole numbers, got {value!r}") from None
            if not out:
                raise self.fail(f"must be a list of whole numbers, got {value!r}")
            for v in out:
                self._bounds(v)
            return out
        ok = (isinstance(value, bool) if t is bool else
              isinstance(value, (int, float)) and not isinstance(value, bool) if t is float else
              isinstance(value, int) and not isinstance(value, bool) if t is int else
              isinstance(value, t))
        if not ok:
            if t is int and isinstance(value, float) and value.is_integer() and abs(value) < 2**62:
                value = int(value)
            else:
                raise self.fail(f"must be {_WORDS.get(t, t.__name__)}, got {value!r} "
                                f"({type(value).__name__})")
        if t is float:
            value = float(value)
            if not math.isfinite(value):
                raise self.fail(f"must be a finite number, got {value}")
        if self.choices is not None and value not in self.choices:
            raise self.fail(f"must be one of {', '.join(map(str, self.choices))}, got {value!r}")
        if t in (int, float):
            self._bounds(value)
        return value

    def _bounds(self, v) -> None:
        if self.lo is not None and v < self.lo:
            raise self.fail(f"must be >= {_num(self.lo)}, got {v}")
        if self.hi is not None and v > self.hi:
            raise self.fail(f"must be <= {_num(self.hi)}, got {v}")
        if self.above is not None and not v > self.above:
            raise self.fail(f"must be > {_num(self.above)}, got {v}")
        if self.below is not None and not v < self.below:
            raise self.fail(f"must be < {_num(self.below)}, got {v}")


_WORDS = {int: "a whole number", float: "a number", str: "a string", bool: "true or false"}


def _num(x: float) -> str:
    return f"{x:g}" if isinstance(x, float) else f"{x:,}".replace(",", "_") if x >= 10**6 else str(x)


def _time_dist(opt: Opt, value) -> TimeDist:
    if isinstance(value, TimeDist):
        d = value.to_json()
    elif isinstance(value, str):
        d = {"kind": value}
    elif isinstance(value, dict):
        d = dict(value)
    else:
        raise opt.fail(f"must be a name or a table, got {value!r}")
    if d.get("kind") not in TIME_DISTS:
        raise opt.fail(f"must be one of {', '.join(TIME_DISTS)}, got {d.get('kind')!r}")
    try:
        td = TimeDist(**d)
    except TypeError as e:
        raise opt.fail(f"has an unknown setting ({e})") from None
    for name, lo in (("std", 0.0), ("a", 0.0)):
        v = getattr(td, name)
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v > lo):
            raise opt.fail(f"{name} must be a finite number > {lo:g}, got {v!r}")
    if not math.isfinite(td.mean) or not (isinstance(td.k, int) and 1 <= td.k <= 1000):
        raise opt.fail("mean must be finite and k a whole number in 1..1000")
    return td
