"""Where training pairs (x0, x1) come from.

Every source is a pure function of ``(seed, index)``: :meth:`PairSource.batch` returns the
``index``-th global batch, so a resumed run sees exactly the batches it would have seen, and a
run on W processes sees the same global batches as a run on one (each process takes a slice).

* :class:`IndependentPairs` — fresh noise x0 ~ N(0, I) beside data x1 (1-rectified flow), or
  x0 drawn from a source data set, independently of x1 (:class:`rectflow.data.sources.Source`).
* :class:`OTPairs` — the same, re-paired within each batch by an exact assignment that
  minimises Σ‖x0 - x1‖² (minibatch OT, as OT-CFM).
* :class:`StoredPairs` — (x0, z1) from a coupling dataset on disk (reflow, distillation).
"""
from __future__ import annotations

from ..data.labels import labels as dataset_labels, sample_toy
from ..errors import UserError
from abc import ABC, abstractmethod

import torch

from ..data import Dataset
from ..core.metrics import ot_assignment
from ..core.seeding import generator

COUPLINGS = ("independent", "ot")


class PairSource(ABC):
    shape: tuple[int, ...]

    @abstractmethod
    def batch(self, index: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``index``-th global batch of ``size`` pairs (x0, x1), on the CPU; a labelled
        source adds a third item, the conditioning ``{"y": labels}``."""


class EpochSampler:
    """Indices of a finite dataset, a fresh seeded permutation each epoch, addressed by
    position in the endless stream (so batch ``i`` needs no state from batch ``i - 1``)."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed = n, seed
        self._epoch, self._perm = -1, None

    def _perm_of(self, epoch: int) -> torch.Tensor:
        if epoch != self._epoch:
            self._epoch = epoch
            self._perm = torch.randperm(self.n, generator=generator(self.seed, "epoch", epoch))
        return self._perm

    def positions(self, start: int, size: int) -> torch.Tensor:
        out, pos = [], start
        while pos < start + size:
            epoch, off = divmod(pos, self.n)
            take = min(self.n - off, start + size - pos)
            out.append(self._perm_of(epoch)[off:off + take])
            pos += take
        return torch.cat(out)


class IndependentPairs(PairSource):
    def __init__(self, dataset: Dataset, seed: int, source=None):
        self.dataset, self.seed, self.source = dataset, seed, source
        self.shape = dataset.shape
        self._sampler = EpochSampler(len(dataset), seed) if dataset.finite else None

    def batch(self, index: int, size: int):
        g = generator(self.seed, "pairs", index)
        if self._sampler is not None:
            x1 = self.dataset.take(self._sampler.positions(index * size, size))
        else:
            x1 = self.dataset.sample(size, g)
        if self.source is None:
            x0 = torch.randn((size, *self.shape), generator=g)
        else:
            x0 = self.source.draw(size, g)
        return x0, x1


class OTPairs(PairSource):
    """Minibatch OT: within each block of ``block`` consecutive pairs of a batch, re-pair the
    data to the noise by the exact assignment. An exact assignment costs O(block³): 256 (the
    OT batch of TorchCFM's examples) takes milliseconds, 2048 takes seconds per step."""

    def __init__(self, inner: PairSource, block: int = 256):
        self.inner, self.block = inner, block
        self.shape = inner.shape

    def batch(self, index: int, size: int):
        x0, x1 = self.inner.batch(index, size)
        parts = [x1[i:i + self.block][ot_assignment(x0[i:i + self.block], x1[i:i + self.block])]
                 for i in range(0, size, self.block)]
        return x0, torch.cat(parts)


def make_source(dataset: Dataset, coupling: str, seed: int, source=None) -> PairSource:
    """Pairs for round 1; ``source`` (a :class:`rectflow.data.sources.Source`) replaces N(0, I)."""
    base = IndependentPairs(dataset, seed, source)
    if coupling == "independent":
        return base
    if coupling == "ot":
        return OTPairs(base)
    raise ValueError(f"unknown coupling {coupling!r}; choose from {', '.join(COUPLINGS)}")


class LabelledPairs(PairSource):
    """Fresh noise beside labelled data: batches ``(x0, x1, {"y": y})``, drawn exactly as
    :class:`~rectflow.training.pairs.IndependentPairs` draws its (x0, x1)."""

    def __init__(self, dataset, spec: dict, seed: int):
        self.dataset, self.seed, self.name = dataset, seed, spec["name"]
        self.shape = dataset.shape
        self.y = dataset_labels(spec, "train") if dataset.finite else None
        if self.y is not None and len(self.y) != len(dataset):
            raise UserError(f"{self.name}: {len(dataset)} rows but {len(self.y)} labels")
        self._sampler = EpochSampler(len(dataset), seed) if dataset.finite else None

    def batch(self, index: int, size: int):
        g = generator(self.seed, "pairs", index)
        if self._sampler is not None:
            pos = self._sampler.positions(index * size, size)
            x1, y = self.dataset.take(pos), self.y[pos]
        else:
            x1, y = sample_toy(self.name, size, g)
        x0 = torch.randn((size, *self.shape), generator=g)
        return x0, x1, {"y": y}


class LabelDropout(PairSource):
    """Replace a seeded share of each batch's labels by "no label" (index ``null``)."""

    def __init__(self, inner: PairSource, share: float, null: int, seed: int):
        self.inner, self.share, self.null, self.seed = inner, share, null, seed
        self.shape = inner.shape
        self.filter = getattr(inner, "filter", None)   # stored pairs' distance cut, if any

    def batch(self, index: int, size: int):
        x0, x1, cond = self.inner.batch(index, size)
        y = cond["y"].clone()
        if self.share > 0:
            y[torch.rand(size, generator=generator(self.seed, "label-drop", index)) < self.share] \
                = self.null
        return x0, x1, {"y": y}


def train_source(card, dataset, cfg, x0s=None) -> PairSource:
    """The pair source of ``train``: labelled pairs with dropout for a conditional card
    (whose x0 is N(0, I) noise; ``x0s``, a data source of x0, is for unconditional runs)."""
    if not card.conditional:
        return make_source(dataset, card.coupling, cfg.seed, x0s)
    if x0s is not None:
        raise UserError("conditional training starts from N(0, I) noise; source (data-to-data "
                        "transport) is for unconditional models")
    if card.coupling != "independent":
        raise UserError(f"coupling {card.coupling} is not available for conditional "
                        "training; use independent")
    return LabelDropout(LabelledPairs(dataset, card.data, cfg.seed), cfg.label_dropout,
                        len(card.classes), cfg.seed)


def pairs_source(card, pairs, cfg) -> PairSource:
    """The pair source of reflow and distill: stored pairs, with their labels when the card
    is conditional."""
    from ..data.pairs import StoredPairs
    src = StoredPairs(pairs, cfg.seed, drop=cfg.pair_drop)
    if not card.conditional:
        return src
    return LabelDropout(src, cfg.label_dropout, len(card.classes), cfg.seed)
