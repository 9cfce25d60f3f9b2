"""The records of ``rectflow run``: ``resolved.json`` (the full config of every stage, written
before the first stage; a rerun with another config is refused) and ``run.json`` (per-stage
status and wall-clock seconds, rewritten after every stage), and ``compare.json`` (the
comparison of a run's or any models' rounds)."""
from __future__ import annotations

from dataclasses import dataclass, field

from .base import Record
from ..options import renamed_options


@dataclass
class ResolvedRun(Record):
    FORMAT = "rectflow/resolved"
    VERSION = 2   # 2: [train], [reflow], [distill] "steps" became "train_steps"
    FILENAME = "resolved.json"

    config: dict

    @classmethod
    def from_json(cls, d: dict, version: int) -> "ResolvedRun":
        config = d["config"]
        if version == 1 and isinstance(config, dict):   # a wrong type is named by check()
            config = dict(config)
            for section in ("train", "reflow", "distill"):
                if isinstance(config.get(section), dict):
                    config[section] = renamed_options(config[section], warn=False)
        return cls(config=config)


@dataclass
class RunLog(Record):
    FORMAT = "rectflow/run"
    VERSION = 1
    FILENAME = "run.json"

    preset: str
    stages: dict = field(default_factory=dict)   # name -> {"status", "seconds", "path"}
    total_seconds: float = 0.0


@dataclass
class Comparison(Record):
    FORMAT = "rectflow/compare"
    VERSION = 2
    FILENAME = "compare.json"

    data: dict
    args: dict
    metrics: list
    metric_notes: dict
    primary_metric: str
    n: int
    n_reference: int
    rows: list
    seeds: list = field(default_factory=list)
    floors: dict = field(default_factory=dict)
    classifier: dict | None = None
    pictures: dict = field(default_factory=dict)
    conditional: dict | None = None  # per model and guidance: class accuracy, per-class paths
