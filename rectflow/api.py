"""The Python API: the same stages as the CLI, with keyword options and live objects.

    import rectflow
    flow = rectflow.train(data="moons", train_steps=2000, out="runs/rf1")   # -> Flow
    x = flow.sample(1000, steps=4)                                   # tensor, data units
    pairs = flow.couple(n=50_000, out="runs/pairs1")                  # -> PairsManifest
    rf2 = rectflow.reflow(pairs="runs/pairs1", out="runs/rf2")
    student = rectflow.distill(pairs="runs/pairs1", out="runs/distill")
    report = rectflow.evaluate(rf2)                                  # -> EvalReport
    table = rectflow.compare([flow, rf2, student], out="runs/compare")  # -> Comparison

Every verb returns the record of what it wrote: a :class:`Flow` (whose ``card`` is the
:class:`RunCard`), :class:`PairsManifest`, :class:`EvalReport`, :class:`Comparison`, and
for the file verbs ``sample_to_file``, ``invert``, ``translate`` and ``interpolate`` a
:class:`SampleRecord` / :class:`TransportRecord`. The command line calls only these functions.

Options are the ones of :mod:`rectflow.options` (``train_steps``, ``batch_size``, ``lr``, ...),
given as keywords, with the CLI's names: ``train_steps`` counts optimizer steps, ``steps``
solver steps (the old ``steps=`` of train, reflow and distill still works, with a
FutureWarning). ``threads=`` fixes the CPU threads as ``--threads`` does (default: measured,
see :mod:`rectflow.threads`). By default a bar (tqdm: a terminal or Jupyter) shows progress on
stderr and one line says each stage's result (:mod:`rectflow.progress`); ``progress=False``
turns that off, and ``callback`` receives the events instead. Events also go to the
``rectflow`` logger (INFO). Bring your own network with ``model=net``: it is called as
``net(x, t)``, saved as safetensors, and loaded back with ``rectflow.load(path, model=net)``.
"""
from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Callable, Iterable

import torch

from . import smoke
from .core.guidance import Guided, check_guidance
from .machine import threads as thread_policy
from .stages import train as stages
from .stages.sample import sample_labels
from .records.checkpoint import Checkpoint, kind_of
from .data import Normalization
from .errors import UserError
from .objectives.diffusion import ancestral_samples, check_sampler
from .options import CoupleConfig, EvalConfig, for_kind, renamed_options
from .progress import PlainLines, Progress, model_line, plural, report_line  # noqa: F401
from .machine.threads import configure as configure_threads, take_note  # noqa: F401 - the CLI's
from .core.path import TimeDist  # noqa: F401 - an option's type, for the CLI
from .core.metrics import few_points, sample_size_notes, verdict  # noqa: F401 - table notes
from .records import (Comparison, EvalReport, PairsManifest, RunCard, SampleRecord,
                      TransportRecord)
from .data import DATASETS, kind_of_data  # noqa: F401 - the CLI's --data choices
from .data.sources import describe as describe_data  # noqa: F401 - a data spec's display name
from .stages import transport as _transport
from .stages.presets import PRESETS  # noqa: F401 - the CLI's --preset choices
from .stages.outputs import default_out

logger = logging.getLogger("rectflow")
Callback = Callable[[dict], None]


def log_progress(event: dict) -> None:
    """The default callback: stage events as log lines (steps at the log interval)."""
    kind = event.get("event")
    if kind == "step":
        logger.info("step %d/%d  loss %.5f  %.0f samples/s", event["step"], event["steps"],
                    event["loss"], event["samples_per_s"])
    elif kind in ("start", "save", "shard", "complete"):
        logger.info("%s %s", kind, {k: v for k, v in event.items() if k != "event"})
    elif kind == "note":
        logger.info("%s", event["text"])


@contextlib.contextmanager
def shown(label: str, callback: Callback | None, progress: bool, threads: int | None = None):
    """The callback of one API call: the caller's, else a :class:`~rectflow.progress.Progress`
    (``progress=True``), else the logger. Sets ``threads`` when given. Yields ``(callback,
    done)``: ``done(line)`` ends the bars with the call's result line."""
    if threads is not None:
        thread_policy.configure(threads)
    if callback is not None or not progress:
        yield callback or log_progress, lambda line: None
        return
    bar = Progress(label, log=log_progress)
    try:
        yield bar, bar.end
    finally:
        bar.end(None)   # an error still closes the bar (its line was said by the error)


class Flow:
    """A trained model folder, loaded: its card, its network, and what you can do with it."""

    def __init__(self, path: str | Path, *, ema: bool = True, model: torch.nn.Module | None = None,
                 device: str | torch.device = "cpu"):
        self.checkpoint = Checkpoint(path)
        self.path = self.checkpoint.path
        self.card: RunCard = self.checkpoint.card
        self.ema = ema
        self.model = self.checkpoint.load_model(ema=ema, device=device, module=model)
        self.objective = self.checkpoint.objective()

    def __repr__(self) -> str:
        c = self.card
        return (f"Flow({str(self.path)!r}, stage={c.stage!r}, round={c.round}, "
                f"data={c.data.get('name')!r}, shape={c.shape})")

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.card.shape)

    def velocity(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """dx/dt of the flow (whatever objective trained the network)."""
        return self.objective.velocity(self.model)(x, t)

    def sample(self, n: int = 1000, *, steps: int | None = None, solver: str = "euler",
               seed: int = 0, raw: bool = True, sampler: str = "ode", classes=None,
               guidance: float = 1.0, **solver_kw) -> torch.Tensor:
        """``n`` samples from seeded noise; in the data's own units (``raw=True``) or in model
        space. ``steps`` defaults to what the model is for (1 for a one-step student).
        ``sampler="ancestral"`` (diffusion models) uses DDPM's stochastic sampler, seeded by
        ``seed``, instead of the ODE. A conditional model samples ``classes`` (names, indices
        or "all", the default; ``n`` split evenly, in blocks of one class) under
        classifier-free guidance ``guidance``."""
        steps = int(steps if steps is not None else self.card.sample["steps"])
        y, n = sample_labels(self.card, classes, smoke.tiny("samples", n))
        check_guidance(self.card, guidance)
        if check_sampler(sampler) == "ancestral":
            if y is not None:
                raise UserError("the ancestral sampler takes no classes; use sampler='ode'")
            sol = ancestral_samples(self.objective, self.model, self.shape, n, steps=steps,
                                    seed=seed, where=str(self.path))
        else:
            v = self.objective.velocity(self.model) if y is None else Guided(
                self.objective, self.model, len(self.card.classes), guidance)
            sol = stages.sample_tensor(v, self.shape, n, steps=steps, solver=solver, seed=seed,
                                       source=self.card.source,
                                       extras=None if y is None else {"y": y}, **solver_kw)
        x = sol.x.clamp(-1, 1) if len(self.shape) == 3 else sol.x
        return Normalization(**(self.card.normalization or {})).to_raw(x) if raw else x

    def couple(self, out: str | Path | None = None, *, overwrite: bool = False,
               callback: Callback | None = None, progress: bool = True,
               threads: int | None = None, **options) -> PairsManifest | None:
        """Write a coupling dataset of (x0, z1) pairs from this model (see :func:`couple`)."""
        return couple(self, out, overwrite=overwrite, callback=callback, progress=progress,
                      threads=threads, **options)


def load(path: str | Path, *, model: torch.nn.Module | None = None, ema: bool = True,
         device: str | torch.device = "cpu") -> Flow:
    """Load a model folder. A model of your own class needs an instance: ``model=Net()``."""
    return Flow(path, ema=ema, model=model, device=device)


def config_section(config: str | Path | None, section: str) -> dict:
    """The ``[section]`` table of the TOML file ``config`` (``--config``): options below the
    ones given as keywords (empty when no file is given)."""
    if config is None:
        return {}
    from .stages.presets import read_toml
    table = read_toml(config).get(section, {})
    if not isinstance(table, dict):
        raise UserError(f"--config {config}: [{section}] must be a table")
    return dict(table)


def couple(teacher: "Flow | str | Path", out: str | Path | None = None, *,
           config: str | Path | None = None,
           overwrite: bool = False, callback: Callback | None = None, progress: bool = True,
           threads: int | None = None, **options) -> PairsManifest | None:
    """Write a coupling dataset of (x0, z1) pairs solved from ``teacher`` (a model folder or a
    :class:`Flow`) into ``out`` (default ``<model>-pairs`` beside it); rerun to resume. Returns its :class:`PairsManifest` (None on
    a process of a distributed run that is not the main one). Options are
    :class:`~rectflow.options.CoupleConfig`'s, over ``config``'s ``[couple]`` table."""
    path = _path_of(teacher)
    out = Path(out) if out is not None else default_out("couple", path)
    custom = isinstance(teacher, Flow) and teacher.card.is_custom
    if isinstance(teacher, Flow):
        options = {"use_ema": teacher.ema, **options}
    cfg = for_kind(CoupleConfig, "couple", kind_of(path), options,
                   config_section(config, "couple"), where=("options", "config file"))
    with shown("couple", callback, progress, threads) as (cb, done):
        manifest = stages.couple(path, out, cfg, overwrite=overwrite, callback=cb,
                                 model=teacher.model if custom else None)
        done(f"couple done: {out} ({manifest.n} pairs)" if manifest is not None else None)
    return manifest


def train(data: str = "moons", *, out: str | Path | None = None,
          model: torch.nn.Module | dict | None = None, coupling: str = "independent",
          data_root: str | None = None, download: bool = False, resolution: int | None = None,
          channels: int | None = None, resume: bool = False, overwrite: bool = False,
          evaluate: bool = True, eval_n: int | None = None, threads: int | None = None,
          progress: bool = True, callback: Callback | None = None,
          config: str | Path | None = None, **options) -> Flow:
    """Train a 1-rectified flow on ``data`` (a name, a folder of images, an array file).
    ``out`` defaults to ``checkpoints/<data>/rf1``; ``config``'s ``[train]`` table fills the
    options not given."""
    options = renamed_options(options, "rectflow.train", stacklevel=2)
    out = Path(out) if out is not None else default_out("train", data)
    with shown("train", callback, progress, threads) as (cb, done):
        ck = stages.train(out, data, data_root=data_root, download=download,
                          resolution=resolution, channels=channels, coupling=coupling,
                          model=model, options=options, resume=resume, overwrite=overwrite,
                          callback=cb, evaluate=evaluate, eval_n=eval_n,
                          file_options=config_section(config, "train"))
        done(model_line(ck.path))
    return Flow(ck.path, model=model if isinstance(model, torch.nn.Module) else None)


def _pairs_path(pairs) -> Path:
    return Path(pairs)


def reflow(pairs: str | Path, *, out: str | Path | None = None, init: str | Path | None = None,
           model: torch.nn.Module | None = None, resume: bool = False, overwrite: bool = False,
           evaluate: bool = True, eval_n: int | None = None, threads: int | None = None,
           progress: bool = True, callback: Callback | None = None, init_ema: bool = True,
           config: str | Path | None = None, **options) -> Flow:
    """Train the next round on ``pairs`` (a folder written by ``couple``), starting from the
    teacher's weights (its EMA ones unless ``init_ema=False``). ``out`` defaults to
    ``<pairs' folder>/../reflow``; ``config``'s ``[reflow]`` table fills options not given."""
    options = renamed_options(options, "rectflow.reflow", stacklevel=2)
    pairs = _pairs_path(pairs)
    out = Path(out) if out is not None else default_out("reflow", pairs)
    with shown("reflow", callback, progress, threads) as (cb, done):
        ck = stages.reflow(pairs, out, init=init, init_ema=init_ema, options=options,
                           resume=resume, overwrite=overwrite, callback=cb, evaluate=evaluate,
                           eval_n=eval_n, model=model,
                           file_options=config_section(config, "reflow"))
        done(model_line(ck.path))
    return Flow(ck.path, model=model)


def distill(pairs: str | Path, *, k: int = 1, out: str | Path | None = None,
            init: str | Path | None = None, model: torch.nn.Module | None = None,
            resume: bool = False, overwrite: bool = False, evaluate: bool = True,
            eval_n: int | None = None, threads: int | None = None, progress: bool = True,
            callback: Callback | None = None, init_ema: bool = True,
            config: str | Path | None = None, **options) -> Flow:
    """Train a ``k``-step student on ``pairs``. ``out`` defaults to ``<pairs>/../distill``;
    ``config``'s ``[distill]`` table (its ``k`` is ``rectflow run``'s) fills options not
    given."""
    options = renamed_options(options, "rectflow.distill", stacklevel=2)
    pairs = _pairs_path(pairs)
    out = Path(out) if out is not None else default_out("distill", pairs)
    with shown("distill", callback, progress, threads) as (cb, done):
        section = config_section(config, "distill")
        section.pop("k", None)
        ck = stages.distill(pairs, out, k=k, init=init, init_ema=init_ema, options=options,
                            resume=resume, overwrite=overwrite, callback=cb, evaluate=evaluate,
                            eval_n=eval_n, model=model, file_options=section)
        done(model_line(ck.path))
    return Flow(ck.path, model=model)


def _path_of(flow: Flow | str | Path) -> Path:
    return flow.path if isinstance(flow, Flow) else Path(flow)


def evaluate(flow: Flow | str | Path, *, out: str | Path | None = None,
             features_dir: str | Path | None = None, reuse: bool = True,
             overwrite: bool = False, threads: int | None = None, progress: bool = True,
             callback: Callback | None = None, **options) -> EvalReport:
    """Quality at several step counts (with the NFE each took), an adaptive reference and the
    path metrics of one model, as an :class:`~rectflow.records.EvalReport`. Written to ``out``
    when given: a ``.json`` file, or the model folder itself, whose own ``eval.json`` is then
    refreshed. A stored report of the same arguments and weights is reused (``reuse``)."""
    cfg = for_kind(EvalConfig, "compare", kind_of(_path_of(flow)), options)
    model = flow.model if isinstance(flow, Flow) and flow.card.is_custom else None
    from .analysis.evaluate import evaluate_checkpoint
    with shown("eval", callback, progress, threads) as (cb, done):
        report = evaluate_checkpoint(_path_of(flow), cfg, out=out, callback=cb, model=model,
                                     features_dir=features_dir, reuse=reuse,
                                     overwrite=overwrite)
        done(f"eval {_path_of(flow)}: {report_line(report)}")
    return report


def compare(flows: Iterable[Flow | str | Path], *, out: str | Path | None = None,
            features_dir: str | Path | None = None, overwrite: bool = False,
            threads: int | None = None, progress: bool = True,
            callback: Callback | None = None, **options) -> Comparison:
    """Evaluate every model on the same noise and held-out data; write tables and pictures
    into ``out`` (default: :func:`default_out`) and return the
    :class:`~rectflow.records.Comparison` (``compare.json``)."""
    from .analysis.compare import compare as run_compare
    flows = list(flows)
    if out is None:
        out = default_out("compare", [_path_of(f) for f in flows], overwrite=overwrite)
    cfg = for_kind(EvalConfig, "compare", kind_of(*map(_path_of, flows)), options)
    with shown("compare", callback, progress, threads) as (cb, done):
        result = run_compare([_path_of(f) for f in flows], out, cfg, callback=cb,
                             features_dir=features_dir, overwrite=overwrite)
        done(f"compare done: {out}")
    return result


def comparison_table(comparison: Comparison) -> tuple[list[str], list[list]]:
    """The comparison's headers and rows, as compare.md shows them."""
    from .analysis.compare import table
    return table(comparison)


def comparison_notes(comparison: Comparison) -> list[str]:
    """The lines that say which of a comparison's numbers rest on too little data."""
    from .analysis.compare import notes_of
    return notes_of(comparison.to_json() if isinstance(comparison, Comparison) else comparison)


def feature_note(features: dict | None) -> str | None:
    """The line naming the network a report's FD features came from (its ``classifier``)."""
    from .analysis.own_features import feature_note as note
    return note(features)


def conditional_table(conditional: dict, steps: list[int]) -> tuple[list[str], list[list]]:
    """A conditional comparison's per-guidance table (headers, rows)."""
    from .analysis import conditional_figures
    return conditional_figures.table(conditional, steps)


def sample_to_file(flow: Flow | str | Path, out: str | Path | None = None,
                   **options) -> SampleRecord:
    """Write samples in the data's own units to ``out`` (``.npy``; default
    ``<model>-samples.npy`` beside the model folder) and a picture beside it
    (:func:`rectflow.stages.sample.sample`'s options: ``n``, ``steps``, ``solver``, ``seed``,
    ``sampler``, ``classes``, ``guidance``, ``overwrite``...)."""
    if out is None:
        out = default_out("sample", _path_of(flow))
    return stages.sample(_path_of(flow), out, **_with_model(flow, options))


def _with_model(flow, options: dict) -> dict:
    if isinstance(flow, Flow):
        options = {"use_ema": flow.ema, **options,
                   "model": flow.model if flow.card.is_custom else None}
    return options


def invert(flow: Flow | str | Path, input: str | Path, out: str | Path,
           **options) -> TransportRecord:
    """Map the data in ``input`` back to its source points, written to ``out`` (``.npy``)."""
    return _transport.invert(_path_of(flow), input, out, **_with_model(flow, options))


def translate(flow: Flow | str | Path, inputs: list, out: str | Path,
              **options) -> TransportRecord:
    """Map each input (source units) to the data; one output per input in the folder ``out``."""
    return _transport.translate(_path_of(flow), inputs, out, **_with_model(flow, options))


def interpolate(flow: Flow | str | Path, inputs: list, out: str | Path,
                **options) -> TransportRecord:
    """Map the line between two source points; a picture ``out`` and the outputs beside it."""
    return _transport.interpolate(_path_of(flow), inputs, out, **_with_model(flow, options))


def animate(flows: Iterable[Flow | str | Path], out: str | Path, **options) -> Path:
    """A GIF of particles flowing from noise to data, one panel per model (2-D data)."""
    from .analysis.compare import animate as make_gif
    return make_gif([_path_of(f) for f in flows], out, **options)


def explore(flows: Iterable[Flow | str | Path], out: str | Path, **options) -> tuple[Path, dict]:
    """One self-contained HTML page replaying the models' trajectories; returns it and its
    data."""
    from .analysis.explore import explore as write_explorer
    return write_explorer([_path_of(f) for f in flows], out, **options)


def run(preset: str | None = None, out: str | Path | None = None, *, data: str | None = None,
        config: str | Path | None = None, overrides: dict | None = None,
        callback: Callback | None = None) -> dict:
    """Run (or continue) the whole pipeline (:mod:`rectflow.stages.run`) in ``out``. ``data``
    (a name, an array file, an image folder) without a ``preset`` takes the preset for its
    kind of data (:func:`rectflow.stages.presets.preset_for`). Returns ``run.json``'s content
    with the :class:`~rectflow.records.Comparison` under ``"compare"``."""
    from .stages import presets, run as pipeline
    name = preset or presets.preset_for(data)
    out = Path(out) if out is not None else default_out("run", data, preset=preset)
    if data is not None:
        overrides = {**(overrides or {}), "data": data}
    return pipeline.run(name, out, config_file=config, overrides=overrides, callback=callback)
