"""What ``sample``, ``invert``, ``translate`` and ``interpolate`` return: the files they wrote
and how they were made. Unlike the other records these are not written to disk (their outputs
are arrays and pictures), so they carry no format or version; ``to_json`` gives a plain dict."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field


class _Plain:
    def to_json(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class SampleRecord(_Plain):
    samples: str                 # the .npy written, in the data's own units
    shape: list                  # of the samples written, [n, ...]
    sampler: str                 # the ODE solver, or "ancestral"
    steps: int
    nfe: float                   # network evaluations per sample
    picture: str | None = None   # the picture beside the samples, when one is drawn
    labels: str | None = None    # a conditional model's labels (.labels.npy)
    note: str | None = None      # what the user should know: a half-trained model, a renamed --out


@dataclass
class TransportRecord(_Plain):
    verb: str                    # invert, translate or interpolate
    out: str                     # the file or folder written
    solver: str
    steps: int
    nfe: float                   # network evaluations per point
    n: int = 0                   # points mapped
    files: list = field(default_factory=list)    # translate: one output per input, same names
    picture: str | None = None   # translate: inputs beside outputs; interpolate: = out
    outputs: str | None = None   # interpolate: the .npy of the frames' images
    frames: int = 0              # interpolate: points on the line
    source: str = ""             # invert: the source the points are in ('N(0, I)', a name)
    round_trip_n: int = 0        # invert --check: inputs the round trip was measured on
    round_trip: list = field(default_factory=list)   # per (solver, steps): nfe, rms_mean/max
