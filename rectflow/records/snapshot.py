"""The small bookkeeping files beside rectflow's tensors, as typed records: a resume
snapshot's ``meta.json`` and ``optimizer.json``, a coupling shard's sidecar
``pairs-NNNNN.json``, the ``config.json`` of the feature classifier cache and of the feature
network cached for the user's own images, and a line of a model folder's training log
``metrics.jsonl`` (:class:`MetricsLine`, one JSON object a line).

Files written before these carried a format are read as version 1 (``UNVERSIONED_OK``); a
malformed one (a hand edit, a string where a number belongs) is one line naming the file and
the field, like every other record.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from ..io.record import JsonLine
from .base import Record
from .manifest import SHARD_RE

CLASSIFIER_MAX = {"channels": 4, "width": 1024, "feat": 4096, "classes": 1000}


@dataclass
class SnapshotMeta(Record):
    FORMAT = "rectflow/snapshot"
    VERSION = 1
    FILENAME = "meta.json"
    UNVERSIONED_OK = True

    step: int
    seed: int = 0
    world: int = 1

    def check(self) -> None:
        if self.step < 0 or self.world < 1:
            raise ValueError(f"step {self.step} / world {self.world} out of range")


@dataclass
class SnapshotOptimizer(Record):
    """The optimizer's state that is not tensors (its tensors are optimizer.safetensors)."""
    FORMAT = "rectflow/optimizer"
    VERSION = 1
    FILENAME = "optimizer.json"
    UNVERSIONED_OK = True

    param_groups: list[dict]
    state: dict = field(default_factory=dict)

    def check(self) -> None:
        for g in self.param_groups:
            params = g.get("params")
            if not (isinstance(params, list) and all(type(p) is int for p in params)):
                raise ValueError("field 'param_groups' must list whole-number params")
        for idx, st in self.state.items():
            if not (idx.isdigit() and isinstance(st, dict)):
                raise ValueError(f"field 'state' has an entry {idx!r} that is not a "
                                 "parameter's state")


@dataclass
class ShardSidecar(Record):
    """What one finished coupling shard holds; written beside it, read on resume."""
    FORMAT = "rectflow/pairs-shard"
    VERSION = 1
    FILENAME = "pairs-00000.json"   # one per shard: always read by its full path
    UNVERSIONED_OK = True

    file: str
    start: int
    count: int
    sha256: str
    nfe: float
    stats: dict[str, float]
    process: int = 0
    seconds: float = 0.0

    def check(self) -> None:
        if not SHARD_RE.match(self.file) or self.start < 0 or self.count < 1:
            raise ValueError(f"shard {self.file!r} at {self.start} (+{self.count}) is not a "
                             "shard of this folder")
        bad = [k for k, v in self.stats.items() if not isinstance(v, (int, float))
               or isinstance(v, bool)]
        if bad:
            raise ValueError(f"field 'stats' entry {bad[0]!r} must be a number")


@dataclass
class ClassifierCache(Record):
    """The feature classifier cached per dataset (its weights are model.safetensors)."""
    FORMAT = "rectflow/classifier"
    VERSION = 1
    FILENAME = "config.json"
    UNVERSIONED_OK = True
    NET_MAX: ClassVar[dict] = CLASSIFIER_MAX

    dataset: str
    net: dict[str, int]
    seed: int = 0
    train: dict = field(default_factory=dict)
    train_size: int = 0
    test_size: int = 0
    test_accuracy: float = 0.0
    seconds: float = 0.0
    sha256: str = ""

    def check(self) -> None:
        unknown = sorted(set(self.net) - set(self.NET_MAX))
        if unknown or "channels" not in self.net:
            raise ValueError(f"field 'net' must give channels (and width, feat, classes), "
                             f"got {sorted(self.net)}")
        for k, v in self.net.items():
            if not 1 <= v <= self.NET_MAX[k]:
                raise ValueError(f"field 'net' {k}={v} is not in 1..{self.NET_MAX[k]}")


@dataclass
class FeatureNetCache(ClassifierCache):
    """The feature network trained on the user's own images (:mod:`rectflow.analysis.
    own_features`), cached per content of their training split (``data_sha256``); its
    ``test_accuracy`` is that of its self-supervised task on the held-out split, and
    ``label_accuracy`` that of its class head when the data has classes."""
    FORMAT = "rectflow/feature-net"
    UNVERSIONED_OK = False
    NET_MAX: ClassVar[dict] = {**CLASSIFIER_MAX, "labels": 1000, "side": 1024}

    objective: str = ""
    data_sha256: str = ""
    label_accuracy: float | None = None


@dataclass(frozen=True)
class MetricsLine(JsonLine):
    """One line of ``metrics.jsonl``: the mean loss of the steps up to ``step``."""
    FILENAME = "metrics.jsonl"

    step: int
    loss: float
    lr: float
    samples_per_s: float
