"""A training stage's options, resolved once, before it runs.

:func:`plan_train` and :func:`plan_on_pairs` are the entry of ``train``, ``reflow`` and
``distill``: they check the output folder, read only what resolution needs (the data's
headers, the pairs' manifest and their teacher's card, a resumed run's card) and combine the
option layers, in the one place they are combined (:func:`rectflow.options.train_config`):

    the caller's options > the saved run (on resume) > the --config file > the stage's own
    layer (distill's k-step grid) > the recipe and defaults of the kind of data > the stage's
    defaults > each option's default

A :class:`TrainConfig` passed in is already resolved (``rectflow run`` resolves each stage's
from its preset, config file and flags: :mod:`rectflow.stages.presets`) and is taken as it is;
only a student's k-step time grid and the teacher's source are set on it. A :class:`StagePlan`
holds the result. The stages (:mod:`rectflow.stages.train`) run a plan and
never resolve an option again; fitting sizes to the machine (CPU images) only shrinks what the
caller did not give (``plan.given``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..data import data_kind, data_spec, spec_shape
from ..data.pairs import PairsDataset
from ..data.sources import teacher_source
from ..errors import CheckpointError, UserError
from ..io.stage import check_output
from ..options import TrainConfig, table_of, train_config
from ..progress import plural
from ..records import RunCard
from ..records import checkpoint as ckpt
from ..records.checkpoint import Checkpoint
from ..training.pairs import COUPLINGS

Options = TrainConfig | dict | None


@dataclass
class StagePlan:
    """Everything a training stage needs, with every option resolved (``config``)."""
    stage: str                       # train, reflow or distill
    out: Path
    config: TrainConfig
    given: dict                      # what the caller set (options over the config file)
    resume: bool = False
    overwrite: bool = False
    card: RunCard | None = None      # the run continued (resume), its train settings updated
    # train
    spec: dict | None = None         # the data, as a data spec
    data: dict = field(default_factory=dict)   # data, data_root, download, resolution, channels
    coupling: str = "independent"
    model: dict | torch.nn.Module | None = None
    # reflow and distill
    pairs: PairsDataset | None = None
    teacher: Checkpoint | None = None    # the init model
    init_ema: bool = True
    sample_steps: int = 100
    extra: dict = field(default_factory=dict)   # card fields of the stage (distill_k)


def given_options(options: Options) -> dict:
    """What the caller set: every field of a TrainConfig, only the non-None keys of a dict."""
    if isinstance(options, TrainConfig):
        return options.to_json()
    return {k: v for k, v in (options or {}).items() if v is not None}


def _layered(stage: str, options: Options, *layers: dict | None, where: tuple[str, ...],
             kind: str | None = None) -> TrainConfig:
    """The stage's config: a TrainConfig as it is, else the caller's options over ``layers``
    (:func:`rectflow.options.train_config`)."""
    if isinstance(options, TrainConfig):
        if stage != "distill":
            return options
        # a student's times: its k-step grid (new), or the saved run's (resumed)
        time_dist = next(layer["time_dist"] for layer in layers
                         if layer and layer.get("time_dist") is not None)
        return options.replace(time_dist=table_of(TrainConfig)["time_dist"].check(time_dist))
    return train_config(stage, given_options(options), *layers, where=where, kind=kind)


def saved_card(out: Path, stage: str) -> RunCard:
    """The card of the run ``resume`` continues: it must be a rectflow run of this stage."""
    if not (out / ckpt.CONFIG).is_file():
        raise UserError(f"cannot resume {out}: it holds no rectflow run (no {ckpt.CONFIG}); "
                        "start a new one without resume")
    card = Checkpoint(out).card
    ckpt.check_state(out)
    if card.stage != stage:
        raise UserError(f"cannot resume {out} as {stage}: it is a {card.stage} run")
    return card


# options a resumed run cannot change: they decide which samples each step sees
FIXED_ON_RESUME = ("batch_size", "grad_accum", "seed", "objective", "time_dist", "loss",
                   "pair_drop", "source")


def _resumed(stage: str, out: Path, options: Options, file_options: dict | None,
             overwrite: bool, **fields) -> StagePlan:
    """On resume the saved settings fill whatever the caller did not set."""
    card = saved_card(out, stage)
    cfg = _layered(card.stage, options, card.train, file_options,
                   where=("options", "saved run", "config file"))
    if cfg.train_steps < card.steps_done:
        raise UserError(f"train_steps {cfg.train_steps} is below the "
                        f"{plural(card.steps_done, 'step')} already done")
    fixed = [k for k in FIXED_ON_RESUME
             if cfg.to_json()[k] != card.train.get(k, cfg.to_json()[k])]
    if fixed:
        raise UserError(f"a resumed run keeps its {', '.join(fixed)}; start a new run to "
                        "change them")
    card.train = cfg.to_json()
    return StagePlan(stage, out, cfg, {**(file_options or {}), **given_options(options)}, True,
                     overwrite, card, **fields)


def reflow_defaults() -> TrainConfig:
    """Every option of a reflow run given nothing (vectors)."""
    return train_config("reflow")


def distill_defaults(k: int = 1) -> TrainConfig:
    """Every option of a ``k``-step distillation given nothing (vectors)."""
    return train_config("distill", {"time_dist": {"kind": "grid", "k": k}})


def plan_train(out: str | Path, data: str = "moons", *, data_root: str | None = None,
               download: bool = False, resolution: int | None = None,
               channels: int | None = None, coupling: str = "independent",
               model: dict | torch.nn.Module | None = None, options: Options = None,
               resume: bool = False, overwrite: bool = False,
               file_options: dict | None = None, note=None) -> StagePlan:
    """The plan of a ``train`` run (see :func:`rectflow.stages.train.train`)."""
    data_path = Path(data_root) if data_root else Path(data) if Path(data).exists() else None
    out = check_output(out, "model", [data_path], overwrite, resume)
    fields = dict(data=dict(data=data, data_root=data_root, download=download,
                            resolution=resolution, channels=channels),
                  coupling=coupling, model=model)
    if resume:
        return _resumed("train", out, options, file_options, overwrite, **fields)
    if coupling not in COUPLINGS:
        raise UserError(f"coupling must be one of {', '.join(COUPLINGS)}, got {coupling!r}")
    spec = data_spec(data, data_root, download, resolution, channels, note)
    # for the kind of data the spec names (read from headers alone)
    cfg = _layered("train", options, file_options, kind=data_kind(spec_shape(spec)),
                   where=("options", "config file"))
    if cfg.pair_drop > 0:
        raise UserError("pair_drop filters stored pairs (reflow); train draws fresh ones")
    return StagePlan("train", out, cfg, {**(file_options or {}), **given_options(options)},
                     False, overwrite, spec=spec, **fields)


def open_pairs(pairs: str | Path) -> PairsDataset:
    """Open a coupling dataset and check every shard before any output is touched."""
    p = PairsDataset(pairs)
    p.verify()
    return p


def teacher_of(pairs: PairsDataset) -> Path:
    t = pairs.manifest.teacher.get("path")
    if t is None:
        raise CheckpointError(f"{pairs.path} does not name its teacher; pass init")
    return pairs.path / t


def verified_teacher(pairs: PairsDataset) -> Checkpoint:
    """The teacher the pairs name, after checking its weights are still the ones the pairs
    were made from (the sha256 in the manifest), so a replaced or altered teacher is never
    used in its place."""
    teacher = Checkpoint(teacher_of(pairs))
    recorded = pairs.manifest.teacher.get("sha256")
    if recorded:
        weights = teacher.weights_path(pairs.manifest.teacher.get("weights") != "model")
        if ckpt.sha256_file(weights) != recorded:
            raise CheckpointError(f"teacher {teacher.path} is not the model the pairs in "
                                  f"{pairs.path} were made from ({weights.name} differs from "
                                  "the sha256 in their manifest); pass init to start from it "
                                  "anyway")
    return teacher


def plan_on_pairs(stage: str, pairs: str | Path, out: str | Path, *,
                  init: str | Path | None = None, init_ema: bool = True,
                  options: Options = None, resume: bool = False, overwrite: bool = False,
                  file_options: dict | None = None, model: torch.nn.Module | None = None,
                  k: int = 1) -> StagePlan:
    """The plan of a ``reflow`` or ``distill`` run (``k``: the student's Euler steps)."""
    out = check_output(out, "model", [pairs, init], overwrite, resume)
    stage_layer, extra, sample_steps = None, {}, 100
    if stage == "distill":   # a student's times are its k-step grid, whatever was given
        if not isinstance(options, TrainConfig):
            options = {n: v for n, v in (options or {}).items() if n != "time_dist"}
        file_options = {n: v for n, v in (file_options or {}).items() if n != "time_dist"}
        stage_layer = {"time_dist": {"kind": "grid", "k": k}}
        extra, sample_steps = {"distill_k": k}, k
    fields = dict(model=model, init_ema=init_ema, sample_steps=sample_steps, extra=extra)
    if resume:
        return _resumed(stage, out, options, file_options, overwrite, **fields)
    pd = open_pairs(pairs)
    cfg = _layered(stage, options, stage_layer, file_options,
                   where=("options", stage, "config file"), kind=data_kind(pd.shape))
    teacher = Checkpoint(init) if init is not None else verified_teacher(pd)
    if tuple(teacher.shape) != tuple(pd.shape):
        raise CheckpointError(f"pairs in {pd.path} have shape {list(pd.shape)} but init "
                              f"{teacher.path} is a model of shape {list(teacher.shape)}")
    cfg = teacher_source(cfg, teacher.card)   # the pairs' source, never another
    return StagePlan(stage, out, cfg, {**(file_options or {}), **given_options(options)},
                     False, overwrite, pairs=pd, teacher=teacher, **fields)
