"""The run card: what a model folder is (``config.json``) and what its weights carry.

A model folder holds ``config.json`` (this record), ``model.safetensors`` and
``ema.safetensors`` (whose header metadata repeats the model config and shape, so weights and
card cannot drift apart unnoticed), ``eval.json``, ``metrics.jsonl`` (the training log) and
``state/`` (resume snapshots). Version 1 cards (rectflow 0.1) are read and upgraded: they had
no objective (flow matching) and their MLP used the old time scale (recorded by the models
package when the field is missing).
"""
from __future__ import annotations

from ..options import data_kind

import platform
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import CheckpointError
from .base import Record
from ..io.record import JsonLine
from ..options import renamed_options
from ..io.files import tensor_metadata

STAGES = ("train", "reflow", "distill")
WEIGHTS = {"model": "model.safetensors", "ema": "ema.safetensors"}
META_KEY = "rectflow"


def versions() -> dict:
    import accelerate
    import torch

    from .. import __version__
    return {"rectflow": __version__, "torch": torch.__version__,
            "accelerate": accelerate.__version__, "python": platform.python_version()}


@dataclass(frozen=True)
class WeightsHeader(JsonLine):
    """What every weights file of a model folder carries in its safetensors header (under
    ``META_KEY``, one JSON string), so weights and card cannot drift apart unnoticed."""
    FILENAME = "rectflow header"

    model: dict
    shape: list[int]
    objective: dict | None = None   # absent in weights of rectflow before objectives


@dataclass
class RunCard(Record):
    FORMAT = "rectflow/checkpoint"
    VERSION = 3   # 3: train["steps"] became train["train_steps"]
    FILENAME = "config.json"

    stage: str                       # train | reflow | distill
    data: dict                       # data spec (rectflow.data.data_spec)
    shape: list[int]
    model: dict                      # {"type": "mlp"|"unet"|"custom", ...}
    train: dict                      # resolved TrainConfig
    seed: int = 0
    round: int = 1
    parent: dict | None = None       # {"pairs", "init", "init_weights", "teacher"} (relative paths)
    objective: dict = field(default_factory=lambda: {"name": "flow"})
    coupling: str = "independent"
    normalization: dict | None = None
    sample: dict = field(default_factory=lambda: {"solver": "euler", "steps": 100})
    distill_k: int | None = None
    heldout: dict | None = None      # how the evaluation split was made (files, folders)
    source: dict | None = None       # {"data": spec, "normalization"}; None: N(0, I)
    versions: dict = field(default_factory=versions)
    steps_done: int = 0
    complete: bool = False
    conditional: bool = False        # class-conditional (model(x, t, y=...)); absent: no
    classes: list[str] | None = None  # class names in label order, when conditional

    def check(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"stage {self.stage!r} is not one of {', '.join(STAGES)}")
        if not isinstance(self.model, dict) or "type" not in self.model:
            raise ValueError("'model' must be a dict with a 'type'")
        if not isinstance(self.data, dict) or "name" not in self.data:
            raise ValueError("'data' must be a data spec with a 'name'")
        self.shape = [int(s) for s in self.shape]
        if not self.shape or min(self.shape) < 1:
            raise ValueError(f"shape {self.shape} is not a shape")
        self.round, self.steps_done, self.seed = int(self.round), int(self.steps_done), int(self.seed)
        self.conditional = bool(self.conditional)
        if self.conditional and not (isinstance(self.classes, list) and self.classes):
            raise ValueError("a conditional card must list its classes")

    @classmethod
    def from_json(cls, d: dict, version: int) -> "RunCard":
        d = dict(d)
        d.pop("format", None)
        if version == 1:   # rectflow 0.1: no objective; its MLP/U-Net used t * 1000
            d.setdefault("objective", {"name": "flow"})
        if version <= 2 and isinstance(d.get("train"), dict):   # "steps" is "train_steps"
            d["train"] = renamed_options(d["train"], warn=False)
        return super().from_json(d, version)

    # ---------------------------------------------------------------------- weights
    def weights_metadata(self) -> dict[str, str]:
        """Stored in the header of every weights file of this folder."""
        return {META_KEY: WeightsHeader(self.model, self.shape, self.objective).text()}

    def check_weights(self, path: Path) -> None:
        """Refuse weights whose header names another model than this card (files written
        before rectflow 0.2 carry no header and are checked by their tensor shapes only)."""
        meta = tensor_metadata(path).get(META_KEY)
        if meta is None:
            return
        m = WeightsHeader.maybe(meta)
        if m is None:
            raise CheckpointError(f"{path} has an unreadable rectflow header")
        theirs = m.model
        if theirs != self.model or m.shape != self.shape:
            keys = [k for k in sorted(set(theirs) | set(self.model))
                    if theirs.get(k) != self.model.get(k)]
            what = f" ({', '.join(keys[:3])} differ)" if keys else " (shape differs)"
            raise CheckpointError(f"{path} holds weights of another model than its "
                                  f"{self.FILENAME} describes{what}")

    def unfinished(self, where) -> str | None:
        """One line saying a model is half-trained (its run stopped before its last step), for
        whoever samples or evaluates it; None when the run completed."""
        if self.complete:
            return None
        total = self.train.get("train_steps")
        of = f" of {total}" if total else ""
        return (f"note: {where} is half-trained ({self.steps_done}{of} steps, complete: "
                f"false); finish it with `rectflow {self.stage} --resume --out {where}`")

    @property
    def is_custom(self) -> bool:
        return self.model.get("type") == "custom"

    @property
    def kind(self) -> str:
        """What kind of data: 'vector' or 'image' (:func:`rectflow.options.data_kind`)."""
        return data_kind(self.shape)


def describe_lineage(card) -> str:
    """Where a model comes from, as it happened: 'distilled from round 2 pairs, initialised from
    round 3 (reflow)'."""
    p = card.parent or {}
    obj = (card.objective or {}).get("name", "flow")
    what = "" if obj == "flow" else f"{obj} "
    if card.stage == "train":
        return f"round 1: {what}trained from {card.coupling} pairs of source and data"
    teacher = p.get("init_objective", "flow")
    kind = p.get("init_stage", "?") + ("" if teacher == "flow" else f", {teacher}")
    init = f"initialised from round {p.get('init_round', '?')} ({kind})"
    pairs = f"round {p.get('pairs_round', card.round - (card.stage == 'reflow'))} pairs"
    if card.stage == "distill":
        return f"{card.distill_k}-step student distilled from {pairs}, {init}"
    return f"round {card.round}: {what}reflow on {pairs}, {init}"
