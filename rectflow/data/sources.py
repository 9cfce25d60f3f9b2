"""The source distribution at t = 0: N(0, I) by default, or any data set rectflow reads.

A data source is recorded in the run card as ``card.source = {"data": spec, "normalization":
{"shift", "scale"}}``; a card without it (every card before data-to-data transport) means
N(0, I). The normalization maps the source's own units (a file's values, digits' 0..16, 8-bit
pixels) to the flow's x0 and back, like ``card.normalization`` does for the target:

* vectors (2-D toys, point-cloud files) are standardised per dimension by their own mean and
  standard deviation (of the training split, or of a seeded draw of :data:`STATS_N` points for
  an infinite toy), so a source of any scale meets the target on equal terms;
* images keep the pixel map to [-1, 1] that targets use, so source and target pixels share
  units (standardising each pixel would blow up the always-black border of a digit).

Source and target are unpaired: x0 and x1 are drawn independently. Every draw of x0 is a pure
function of ``(seed, keys)``, as the noise it replaces: :meth:`Source.block` gives the x0 of
indices ``[start, stop)`` from one generator per block of indices, so a coupling dataset is
byte-identical whatever the batch size, like :func:`rectflow.core.seeding.block_noise`.
"""
from __future__ import annotations

import torch

from . import Dataset, Normalization, data_spec, load_dataset
from ..errors import UserError
from ..core.metrics import ot_cost
from ..core.seeding import blocks, generator

STATS_N = 100_000   # draws that fix an infinite source's mean and std


def source_spec(source: str, root: str | None = None, download: bool = False,
                resolution: int = 32, channels: int = 3) -> dict:
    """The data spec of the user's ``source`` value (same forms as ``data``, plus
    ``digits:3``)."""
    if source.strip().lower() in ("noise", "gaussian", "normal"):
        raise UserError("source N(0, I) is the default: leave source unset")
    return data_spec(source, root, download, resolution, channels)


def describe(spec: dict | None) -> str:
    """'N(0, I)', 'moons', 'digits:3', or a file's name, of a data spec or a source record."""
    if not spec:
        return "N(0, I)"
    spec = spec.get("data", spec)   # a card's source record holds its spec
    name = spec.get("name", "?")
    if spec.get("classes"):
        return f"{name}:{','.join(map(str, spec['classes']))}"
    path = spec.get("path") or spec.get("root")
    return str(path).rsplit("/", 1)[-1] if name in ("file", "imagefolder") and path else name


def _standardising(ds: Dataset) -> Normalization:
    """Raw source units <-> standardised x0 (vectors), or the dataset's own map (images)."""
    if ds.is_image:
        return ds.normalization
    x = ds.take(torch.arange(len(ds))) if ds.finite else \
        ds.sample(STATS_N, generator(0, "source-stats"))
    raw = ds.to_raw(x.double())
    mean, std = raw.mean(0), raw.std(0).clamp_min(1e-8)
    return Normalization(shift=mean.tolist(), scale=std.tolist())


def card_source(source: str, target_shape: tuple[int, ...], data_name: str, *,
                root: str | None = None, download: bool = False, resolution: int = 32,
                channels: int = 3) -> dict:
    """What a new run records as ``card.source``; the source must have the target's shape."""
    spec = source_spec(source, root, download, resolution, channels)
    ds = load_dataset(spec, "train", allow_download=download)
    if tuple(ds.shape) != tuple(target_shape):
        raise UserError(f"source {source} has shape {list(ds.shape)} but data {data_name} has "
                        f"shape {list(target_shape)}; a flow maps between data of one shape")
    return {"data": spec, "normalization": _standardising(ds).to_json()}


class Source:
    """Draws of x0: N(0, I) when ``record`` is None, else the recorded data source in x0 units.
    ``split='test'`` draws the source's held-out points (evaluation)."""

    def __init__(self, record: dict | None, shape: tuple[int, ...], split: str = "train"):
        self.record, self.shape = record, tuple(shape)
        self.spec = record["data"] if record else None
        self.normalization = Normalization(**record["normalization"]) if record else \
            Normalization()
        self.dataset = load_dataset(self.spec, split) if record else None
        if self.dataset is not None and tuple(self.dataset.shape) != self.shape:
            raise UserError(f"source {describe(self.spec)} now has shape "
                            f"{list(self.dataset.shape)}, the model is for {list(self.shape)}")

    @property
    def is_noise(self) -> bool:
        return self.record is None

    def to_x0(self, raw: torch.Tensor) -> torch.Tensor:
        """The source's own units -> x0."""
        return self.normalization.to_model(raw.float())

    def to_raw(self, x0: torch.Tensor) -> torch.Tensor:
        return self.normalization.to_raw(x0)

    def draw(self, n: int, g: torch.Generator) -> torch.Tensor:
        """``n`` points of x0 from ``g`` alone (finite sources: with replacement)."""
        if self.dataset is None:
            return torch.randn((n, *self.shape), generator=g)
        x = self.dataset.sample(n, g)
        return self.to_x0(self.dataset.to_raw(x.double())).contiguous()

    def block(self, start: int, stop: int, seed: int, size: int) -> torch.Tensor:
        """x0 of indices [start, stop): each block of ``size`` indices from its own generator."""
        return blocks(start, stop, seed, "noise" if self.is_noise else "source", self.draw, size)


def initial_points(card, n: int, seed: int, tag: str) -> torch.Tensor:
    """The x0 a stage starts its solves from: seeded noise (as :func:`rectflow.core.seeding.noise`
    draws it) for a noise model, else held-out source points."""
    src = getattr(card, "source", None)
    if src is None:
        return torch.randn((n, *card.shape), generator=generator(seed, tag))
    return Source(src, tuple(card.shape), "test").draw(n, generator(seed, tag))


def data_ot(card, x0: torch.Tensor, seed: int, m: int) -> dict:
    """The exact OT cost between source points ``x0`` and as many target points (training
    split, without repetition): the lowest transport cost any coupling of the two data sets
    can reach on that sample. Empty for a noise model."""
    if getattr(card, "source", None) is None:
        return {}
    target = load_dataset(card.data, "train")
    g = generator(seed, "data-ot")
    if target.finite:
        k = min(m, len(target), x0.shape[0])
        x1 = target.take(torch.randperm(len(target), generator=g)[:k])
    else:
        k = min(m, x0.shape[0])
        x1 = target.sample(k, g)
    return {"data_ot_cost": ot_cost(x0[:k].float().cpu(), x1.float()), "data_ot_n": int(k)}


def teacher_source(cfg, teacher):
    """Reflow and distill transport between the teacher's source and data: ``cfg`` (a
    TrainConfig) with the teacher's ``source``; a different one is refused."""
    theirs = teacher.train.get("source")
    if cfg.source is not None and cfg.source != theirs:
        raise UserError(f"source {cfg.source} differs from the teacher's ({theirs or 'N(0, I)'}"
                        "); reflow and distill keep the source of their pairs")
    return cfg.replace(source=theirs)
