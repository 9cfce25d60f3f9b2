"""The evaluation report (``eval.json``): one schema for the evaluation every training stage
writes after it finishes, for ``rectflow eval`` and for each row of ``compare``.

It carries the sha256 of the weights it measured and the arguments that produced it;
:meth:`EvalReport.matches` is how ``compare`` decides to reuse a report instead of
recomputing it (a report whose checksum or arguments differ is recomputed, never trusted).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from .base import Record


@dataclass
class EvalReport(Record):
    FORMAT = "rectflow/eval"
    VERSION = 2
    FILENAME = "eval.json"
    # where this report was read or written, and whether it was reused (not part of the file)
    cached: ClassVar[bool] = False
    file: ClassVar[str | None] = None

    checkpoint: str
    stage: str
    round: int
    args: dict                       # every argument that decides the numbers
    weights_sha256: str
    n: int                           # samples per figure
    n_reference: int                 # held-out points they are compared with
    seed: int
    solver: str                      # fixed-grid solver of the per-steps figures
    metrics: dict                    # metric name -> what it measures
    quality: dict                    # str(steps) -> {"steps", "nfe", metric: value, ...}
    path: dict                       # straightness, curvature, transport and OT cost, size
    reference: dict | None = None    # the adaptive solver's figures, when measured
    floors: dict = field(default_factory=dict)   # metric (mean, _std) -> noise floor at n
    image: bool = False
    classifier: dict | None = None
    seeds: list = field(default_factory=list)   # evaluation seeds the means are over
    lineage: str = ""
    seconds: float = 0.0
    conditional: dict | None = None  # per guidance: quality with class accuracy, per-class paths

    def matches(self, args: dict, weights_sha256: str) -> bool:
        return self.args == args and self.weights_sha256 == weights_sha256

    @property
    def primary_metric(self) -> str:
        """The quality number a table leads with: FD for images when measured, else W2."""
        return "fd" if "fd" in self.metrics else "w2"
