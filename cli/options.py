"""Command-line options built from the library's option tables (rectflow.options), so each
option is declared once. An option the user does not type arrives as ``None`` (unset) and the
library fills it: from the saved run on --resume, the --config file, then the defaults (shown
in --help)."""

import functools
import inspect
import math
import typing
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from rectflow.errors import UserError
from rectflow.options import THREADS, Opt
from rectflow.api import TimeDist

Out = Annotated[Optional[Path], typer.Option("--out", "-o", help="Output folder.")]
Overwrite = Annotated[bool, typer.Option(help="Replace an existing output that rectflow made (the new one is swapped in when it completes).")]
Resume = Annotated[bool, typer.Option(help="Continue the run in --out from its last saved step; options you do not give keep their saved values.")]
Ckpt = Annotated[Path, typer.Option("--ckpt", help="Model folder written by train/reflow/distill.")]
UseEma = Annotated[bool, typer.Option("--use-ema/--no-ema", help="Use the EMA weights (default) or the raw ones.")]
ConfigFile = Annotated[Optional[Path], typer.Option("--config", help="TOML file whose matching table (e.g. \\[train]) fills options not given here.")]
Evaluate = Annotated[bool, typer.Option("--eval/--no-eval", help="Evaluate the model when training ends (bounded: no adaptive reference).")]
EvalN = Annotated[Optional[int], typer.Option("--eval-n", help="Samples of that evaluation (default 2000 for vectors, 200 for images).")]

Threads = Annotated[Optional[int], typer.Option(help=THREADS.help, min=1, show_default=False)]


def use_threads(n: Optional[int]) -> None:
    """Set the CPU thread policy for this command; its progress bar says so in one line when
    work starts (so a refused invocation still prints only its error)."""
    from rectflow.api import configure_threads
    configure_threads(n)


_PY = {int: int, float: float, str: str, bool: bool, tuple: str, TimeDist: str}


def _show(v) -> str:
    if isinstance(v, TimeDist):
        return v.kind
    if isinstance(v, dict):   # a time distribution with settings, e.g. u-shaped a=4.0
        return " ".join([str(v.get("kind"))] + [f"{k}={x}" for k, x in v.items() if k != "kind"])
    if isinstance(v, (tuple, list)):
        return ",".join(map(str, v))
    return str(v)


def param(name: str, annotation, default) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default,
                             annotation=annotation)


def by_kind(section: str) -> dict[str, str]:
    """The defaults of ``section`` that differ between vectors and images, as the words --help
    shows (``0.003 on vectors, 0.001 on images``): what a run really uses, not one number."""
    from rectflow.options import CoupleConfig, EvalConfig, for_kind, train_config
    cls = {"couple": CoupleConfig, "compare": EvalConfig}.get(section)
    cfgs = [train_config(section, kind=k) if cls is None else for_kind(cls, section, k)
            for k in ("vector", "image")]
    vec, img = ({k: _show(getattr(c, k)) for k in c.to_json()} for c in cfgs)
    return {k: f"{vec[k]} on vectors, {img[k]} on images" for k in vec if vec[k] != img[k]}


def option_params(table: tuple[Opt, ...], shown: dict | None = None,
                  skip: tuple[str, ...] = (), section: str | None = None
                  ) -> list[inspect.Parameter]:
    """One typer option per entry of ``table``, unset (None) by default; ``shown`` holds the
    defaults to print in --help where they differ from the option's own, and ``section`` (a
    stage, ``couple`` or ``compare``) adds the ones that depend on the kind of data."""
    shown = {**(shown or {}), **(by_kind(section) if section else {})}
    params = []
    for o in table:
        if o.name in skip:
            continue
        default = shown.get(o.name, o.default)
        # rich markup would swallow a bare "[default: ...]" as a tag: escape the help
        helptext = escape(f"{o.help} [default: {_show(default) if default is not None else 'none'}]")
        flags = [o.cli_flag] + ([o.short] if o.short else [])
        if o.base_type is bool:
            flags = [f"{o.cli_flag}/{o.off or '--no-' + o.cli_flag[2:]}"]
        params.append(param(o.name, Annotated[Optional[_PY[o.base_type]],
                                             typer.Option(*flags, help=helptext,
                                                          show_default=False)], None))
        if o.base_type is TimeDist:
            for extra, h in (("logit_mean", "Mean of the logit-normal time distribution."),
                             ("logit_std", "Std of the logit-normal time distribution."),
                             ("u_a", "Sharpness a of the U-shaped time distribution.")):
                params.append(param(extra, Annotated[Optional[float], typer.Option(help=h)], None))
    return params


def collect(values: dict) -> dict:
    """The options the user typed, with the time distribution's parts joined into one."""
    given = {k: v for k, v in values.items() if v is not None}
    parts = {k: given.pop(k) for k in ("logit_mean", "logit_std", "u_a") if k in given}
    if parts or "time_dist" in given:
        td = {"kind": given.get("time_dist", "logit-normal" if "logit_mean" in parts or
                                "logit_std" in parts else "u-shaped" if parts else "uniform")}
        for k, field in (("logit_mean", "mean"), ("logit_std", "std"), ("u_a", "a")):
            if k in parts:
                td[field] = parts[k]
        given["time_dist"] = td
    return given


def with_options(params: list[inspect.Parameter], target: str = "options"):
    """Decorator: append ``params`` to a command's signature (so typer shows them) and call
    the command with ``<target>=collect(values)`` instead of the separate values."""
    names = [p.name for p in params]

    def wrap(fn):
        sig = inspect.signature(fn)
        own = [p for p in sig.parameters.values() if p.name != target]

        @functools.wraps(fn)
        def command(**kwargs):
            given = collect({k: kwargs.pop(k) for k in names})
            return fn(**{target: given}, **kwargs)

        command.__signature__ = sig.replace(parameters=own + params)
        del command.__wrapped__
        return command
    return wrap


def _floats(fn) -> dict[str, str]:
    """Parameter name -> flag of every float parameter of a command (float, float | None,
    list[float])."""
    out = {}
    for name, prm in inspect.signature(fn).parameters.items():
        ann, decls = prm.annotation, ()
        if typing.get_origin(ann) is Annotated:
            ann, *meta = typing.get_args(ann)
            for m in meta:   # typer.Option("--flag", ...) stores its first flag as default
                first = getattr(m, "default", None)
                decls = (*([first] if isinstance(first, str) else []),
                         *getattr(m, "param_decls", ()))
        inner = {a for a in (typing.get_args(ann) or (ann,)) if a is not type(None)}
        inner |= {b for a in inner for b in typing.get_args(a)}
        if float in inner:
            flag = next((d.split("/")[0] for d in decls if d.startswith("--")), None)
            out[name] = flag or "--" + name.replace("_", "-")
    return out


def finite_floats(fn):
    """``fn`` refusing nan and inf in every float flag (a NaN guidance or tolerance would run
    to the end and write NaN results): one wrapper on every command, so a new flag is
    covered too."""
    floats = _floats(fn)

    @functools.wraps(fn)
    def command(**kwargs):
        for name, flag in floats.items():
            v = kwargs.get(name)
            for x in v if isinstance(v, (list, tuple)) else [v]:
                if isinstance(x, float) and not math.isfinite(x):
                    raise UserError(f"{flag} must be a finite number, got {x}")
        return fn(**kwargs)

    command.__signature__ = inspect.signature(fn)
    return command
