"""The coupling dataset's records: ``plan.json`` (what defines the pairs, written first) and
``manifest.json`` (provenance, shards with checksums, path metrics; written last).

A pairs folder is finished exactly when its manifest exists. Shard names in a manifest are
checked to be plain ``pairs-NNNNN.safetensors`` names tiling ``[0, n)`` in order, so a manifest
can never send a reader outside its folder.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from .base import Record

SHARD_RE = re.compile(r"^pairs-\d{5}\.safetensors$")


def shard_name(i: int) -> str:
    return f"pairs-{i:05d}.safetensors"


def sidecar_name(i: int) -> str:
    return f"pairs-{i:05d}.json"


@dataclass
class PairsPlan(Record):
    FORMAT = "rectflow/pairs-plan"
    VERSION = 1
    FILENAME = "plan.json"

    settings: dict                   # the CoupleConfig fields that determine the pairs
    teacher_sha256: str
    noise_block: int

    def differences(self, other: "PairsPlan") -> list[str]:
        a, b = self.to_json(), other.to_json()
        keys = [k for k in sorted(set(a) | set(b)) if k != "settings" and a.get(k) != b.get(k)]
        sa, sb = self.settings, other.settings
        return keys + [k for k in sorted(set(sa) | set(sb)) if sa.get(k) != sb.get(k)]


@dataclass
class Shard:
    file: str
    start: int
    count: int
    sha256: str


@dataclass
class PairsManifest(Record):
    FORMAT = "rectflow/pairs"
    VERSION = 2
    FILENAME = "manifest.json"

    shape: list[int]
    n: int
    shards: list[Shard]
    teacher: dict                    # {"path" (relative), "sha256", "weights", "stage", "round"}
    data: dict
    seed: int
    solver: dict                     # {"method", "steps"} or {"method", "rtol", "atol"}
    plan: dict
    nfe: float                       # mean function evaluations per pair
    metrics: dict = field(default_factory=dict)
    versions: dict = field(default_factory=dict)
    source: dict | None = None       # the teacher's card.source; None: N(0, I) noise
    classes: list[str] | None = None  # conditional teacher: shards hold labels y [K]
    guidance: float | None = None     # the classifier-free guidance the pairs were solved with

    @classmethod
    def from_json(cls, d: dict, version: int) -> "PairsManifest":
        d = dict(d)
        d["shards"] = [Shard(file=str(s["file"]), start=int(s["start"]), count=int(s["count"]),
                             sha256=str(s["sha256"])) for s in d["shards"]]
        return super().from_json(d, version)

    def to_json(self) -> dict:
        d = super().to_json()   # asdict turns the shards into dicts
        return d

    def check(self) -> None:
        self.shape = [int(s) for s in self.shape]
        self.n = int(self.n)
        start = 0
        for s in self.shards:
            if not SHARD_RE.match(s.file):
                raise ValueError(f"shard {s.file!r} is not a plain pairs-NNNNN.safetensors "
                                 "file in the folder")
            if s.start != start or s.count < 1:
                raise ValueError(f"shard {s.file} does not start at index {start}")
            start += s.count
        if start != self.n:
            raise ValueError("shard counts do not add up to n")
