"""Class-conditional flows and classifier-free guidance, for every stage.

A conditional model is called ``model(x, t, y=labels)``; index ``C`` (the number of classes)
is "no label", and ``y=None`` means it too. Training replaces a share ``label_dropout`` of the
labels by it, so one network gives both the conditional velocity ``v(x, t, y)`` and the
unconditional one ``v(x, t, ∅)``. Sampling with guidance ``w`` follows

    v_w(x, t, y) = v(x, t, ∅) + w · (v(x, t, y) - v(x, t, ∅))

(w = 0 unconditional, w = 1 plain conditional, w > 1 sharper classes, less diversity).

Coupling stores each pair's label beside it (``y`` in every shard, the guidance in the
manifest); reflow trains on the (x0, x1, y) triples with the same label dropout, so a reflowed
model still serves every guidance; a distilled student learns the guided map its pairs were
made with (no dropout: ``w`` is baked in, and the student still takes ``y``).

Labels are addressed by index like the noise: pair ``i`` draws its class from the training
class frequencies with the generator of ``(seed, i // BLOCK)``, so labelled pairs are
byte-identical for any batch size and number of processes.
"""
from __future__ import annotations

import math

import torch

from . import solvers
from .couplings import EpochSampler, PairSource, make_source
from .errors import CheckpointError, UserError
from .labels import class_names, labels as dataset_labels, prior, sample_toy
from .seeding import generator


# ------------------------------------------------------------------------------- options
def guidances(text: str | float) -> list[float]:
    """The guidance weights of an ``EvalConfig.guidance`` string such as ``"0,1,2"``."""
    parts = [p for p in str(text).split(",") if p.strip()]
    try:
        ws = [float(p) for p in parts]
    except ValueError:
        raise UserError(f"guidance must be comma-separated numbers, got {text!r}") from None
    if not ws or any(not math.isfinite(w) or w < 0 or w > 100 for w in ws):
        raise UserError(f"guidance must be numbers in 0..100, got {text!r}")
    return list(dict.fromkeys(ws))


def lead_guidance(ws: list[float]) -> float:
    return 1.0 if 1.0 in ws else ws[0]


# ------------------------------------------------------------------------ training pairs
class LabelledPairs(PairSource):
    """Fresh noise beside labelled data: batches ``(x0, x1, {"y": y})``, drawn exactly as
    :class:`~rectflow.couplings.IndependentPairs` draws its (x0, x1)."""

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
    from .data.pairs import StoredPairs
    src = StoredPairs(pairs, cfg.seed, drop=cfg.pair_drop)
    if not card.conditional:
        return src
    return LabelDropout(src, cfg.label_dropout, len(card.classes), cfg.seed)


def new_card(cfg, spec: dict) -> tuple[dict, dict]:
    """Card fields and model overrides of a new ``train`` run."""
    if not cfg.conditional:
        return {}, {}
    classes = class_names(spec)
    return {"conditional": True, "classes": classes}, {"num_classes": len(classes)}


def inherited(teacher_card, manifest) -> dict:
    """Card fields a reflow/distill run takes from its teacher; the pairs must agree."""
    labelled = manifest.classes is not None
    if labelled != bool(teacher_card.conditional) or (
            labelled and list(manifest.classes) != list(teacher_card.classes)):
        raise CheckpointError("the pairs and the init model disagree on class labels "
                              f"(pairs: {manifest.classes}, model: {teacher_card.classes})")
    return {"conditional": True, "classes": list(teacher_card.classes)} if labelled else {}


# -------------------------------------------------------------------- guided velocities
class Guided:
    """``v_w(x, t, y)`` of a conditional network under classifier-free guidance ``w``."""

    def __init__(self, objective, model, num_classes: int, guidance: float = 1.0):
        self.objective, self.model, self.null, self.w = objective, model, num_classes, guidance

    def __call__(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        def v(labels):
            return self.objective.velocity(self.model, y=labels)(x, t)
        if self.w == 1.0:
            return v(y)
        vu = v(torch.full_like(y, self.null))
        if self.w == 0.0:
            return vu
        return vu + self.w * (v(y) - vu)

    def bind(self, y: torch.Tensor, chunk: int | None = None) -> "Labelled":
        return Labelled(self, y, chunk)


class Labelled:
    """A plain ``v(x, t)`` for rows labelled ``y`` (a call on fewer rows uses the leading
    labels, as the path metrics do). With ``chunk`` the network always sees ``chunk`` rows
    (zero-padded, labels padded with "no label"), as :func:`rectflow.solvers.chunked`."""

    def __init__(self, guided: Guided, y: torch.Tensor, chunk: int | None = None):
        self.guided, self.y, self.chunk = guided, y, chunk

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        y = self.y[:x.shape[0]].to(x.device)
        if self.chunk is None:
            return self.guided(x, t, y)
        c, outs = self.chunk, []
        for i in range(0, x.shape[0], c):
            xs, ts, ys = x[i:i + c], t[i:i + c], y[i:i + c]
            n = xs.shape[0]
            if n < c:
                xs = torch.cat([xs, xs.new_zeros((c - n, *xs.shape[1:]))])
                ts = torch.cat([ts, ts.new_zeros(c - n)])
                ys = torch.cat([ys, ys.new_full((c - n,), self.guided.null)])
            outs.append(self.guided(xs, ts, ys)[:n])
        return outs[0] if len(outs) == 1 else torch.cat(outs)


def solve(velocity, x0: torch.Tensor, method: str = "euler", **kw) -> solvers.Solution:
    """:func:`rectflow.solvers.solve`, also for labelled velocities: dopri5 evaluates only the
    rows still stepping, so it solves one class at a time (each row has its own steps, so the
    result is the same as one joint solve)."""
    if not (isinstance(velocity, Labelled) and method == "dopri5"):
        return solvers.solve(velocity, x0, method=method, **kw)
    if kw.get("observer") is not None or kw.get("record"):
        raise UserError("dopri5 on a conditional model records no path; use a fixed-grid "
                        "solver for path metrics")
    y = velocity.y[:x0.shape[0]]
    x, nfe = torch.empty_like(x0), torch.zeros(x0.shape[0], dtype=torch.float64)
    for c in torch.unique(y).tolist():
        rows = (y == c).nonzero().squeeze(1)
        sol = solvers.solve(Labelled(velocity.guided, y[rows], velocity.chunk), x0[rows],
                            method=method, **kw)
        x[rows] = sol.x
        nfe[rows] = sol.nfe_per_sample.double() if sol.nfe_per_sample is not None else sol.nfe
    return solvers.Solution(x=x, nfe=float(nfe.mean()), times=[0.0, 1.0],
                            nfe_max=int(nfe.max()), nfe_per_sample=nfe)


def guided(checkpoint, guidance: float = 1.0, *, ema: bool = True, device="cpu",
           module=None) -> Guided:
    """The guided velocity of a conditional model folder."""
    card = checkpoint.card
    net = checkpoint.load_model(ema, device, module)
    return Guided(checkpoint.objective(), net, len(card.classes), guidance)


def check_guidance(card, guidance: float) -> None:
    import math
    if isinstance(guidance, bool) or not isinstance(guidance, (int, float)) \
            or not math.isfinite(guidance):
        raise UserError(f"guidance must be a finite number, got {guidance!r}")
    if not card.conditional and guidance != 1.0:
        raise UserError(f"guidance {guidance:g} needs a conditional model (trained with "
                        "conditional); this one is unconditional")


# ------------------------------------------------------------------------------- couple
class ConditionalTeacher:
    """What :func:`rectflow.pairgen.write_pairs` needs of a conditional teacher: the label of
    every pair index and the guided velocity on labelled rows."""

    def __init__(self, guide: Guided, class_prior: torch.Tensor, classes: list[str]):
        self.guide, self.prior, self.classes = guide, class_prior, classes

    def labels(self, start: int, stop: int, seed: int) -> torch.Tensor:
        """Labels of indices [start, stop): each noise block's from its own generator."""
        from .pairgen import BLOCK
        parts = []
        for b in range(start // BLOCK, (stop - 1) // BLOCK + 1):
            y = torch.multinomial(self.prior, BLOCK, replacement=True,
                                  generator=generator(seed, "labels", b))
            parts.append(y[max(start, b * BLOCK) - b * BLOCK:min(stop, (b + 1) * BLOCK) - b * BLOCK])
        return torch.cat(parts)

    def velocity(self, y: torch.Tensor, chunk: int) -> Labelled:
        return self.guide.bind(y, chunk)


def couple_teacher(checkpoint, cfg, device, module=None):
    """The teacher of ``couple``: a plain velocity, or a :class:`ConditionalTeacher`."""
    card = checkpoint.card
    check_guidance(card, cfg.guidance)
    if not card.conditional:
        return checkpoint.velocity(ema=cfg.use_ema, device=device, module=module)
    g = guided(checkpoint, cfg.guidance, ema=cfg.use_ema, device=device, module=module)
    return ConditionalTeacher(g, prior(card.data), list(card.classes))


def provenance(card, cfg) -> dict:
    return {"classes": list(card.classes), "guidance": cfg.guidance} if card.conditional else {}


# ------------------------------------------------------------------------------- sample
def pick_classes(card, classes) -> list[int]:
    """Class indices from names or indices (``"all"``: every class)."""
    names = list(card.classes or [])
    if isinstance(classes, str):
        classes = [c for c in classes.split(",") if c.strip()]
    if not classes or list(classes) == ["all"]:
        return list(range(len(names)))
    out = []
    for c in classes:
        c = str(c).strip()
        if c in names:
            out.append(names.index(c))
        elif c.isdigit() and int(c) < len(names):
            out.append(int(c))
        else:
            raise UserError(f"class {c!r} is not one of {', '.join(names)} (or 'all')")
    return out


def sample_labels(card, classes, n: int) -> tuple[torch.Tensor | None, int]:
    """Labels of ``n`` samples split evenly over the chosen classes (rounded up), in blocks
    (one grid row per class), and their number; None for an unconditional model."""
    if not card.conditional:
        if classes:
            raise UserError("classes need a conditional model (trained with conditional); "
                            "this one is unconditional")
        return None, n
    picks = pick_classes(card, classes)
    y = torch.tensor(picks, dtype=torch.int64).repeat_interleave(-(-n // len(picks)))
    return y, len(y)


def per_class(y: torch.Tensor | None) -> int | None:
    """Samples per class of :func:`sample_labels` (a picture's row length)."""
    return None if y is None else len(y) // len(set(y.tolist()))


def write_npy(path, array: torch.Tensor) -> None:
    import io

    import numpy as np

    from .records.files import atomic_write_bytes
    buf = io.BytesIO()
    np.save(buf, array.numpy(), allow_pickle=False)
    atomic_write_bytes(path, buf.getvalue())


def sample_velocity(checkpoint, y: torch.Tensor | None, guidance: float, *, ema=True,
                    device="cpu", module=None):
    check_guidance(checkpoint.card, guidance)
    if y is None:
        return checkpoint.velocity(ema=ema, device=device, module=module)
    return guided(checkpoint, guidance, ema=ema, device=device, module=module).bind(y)
