"""Feature networks for a Fréchet distance on images.

The standard FID needs Inception-v3 weights, which rectflow cannot download. Instead it trains
a small classifier once per dataset (digits, MNIST, CIFAR-10: the ones whose labels it can read
without unpickling), seeded, and caches it as ``<root>/<dataset>/model.safetensors`` +
``config.json`` with its held-out accuracy. The Fréchet distance between Gaussians fitted to its
penultimate-layer features ("FD") ranks samples the way FID does, on a smaller network; its
numbers are comparable only between runs using the same cached classifier (its sha256 is
recorded in every ``eval.json``).

With a local Inception checkpoint (``--fid-weights``, a safetensors file of torchvision's
``inception_v3`` state dict) :func:`inception` gives the 2048-d pool features of the usual FID.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import smoke
from ..records import checkpoint as ckpt
from ..data import load_dataset
from ..data.labels import labels
from ..errors import DataError, UserError
from ..records.snapshot import ClassifierCache
from ..core.seeding import generator

FEATURE_SETS = ("digits", "mnist", "cifar10")
SEED = 0
TRAIN = {"digits": {"width": 16, "epochs": 12, "batch_size": 64, "lr": 3e-3},
         "mnist": {"width": 32, "epochs": 2, "batch_size": 128, "lr": 2e-3},
         "cifar10": {"width": 32, "epochs": 8, "batch_size": 128, "lr": 2e-3}}


class Classifier(nn.Module):
    """Three conv blocks, global average pooling, a ``feat``-wide hidden layer (the features),
    and a 10-way linear head."""

    def __init__(self, channels: int, width: int = 32, feat: int = 64, classes: int = 10):
        super().__init__()
        w = width
        self.body = nn.Sequential(
            nn.Conv2d(channels, w, 3, padding=1), nn.BatchNorm2d(w), nn.SiLU(),
            nn.Conv2d(w, 2 * w, 3, padding=1, stride=2), nn.BatchNorm2d(2 * w), nn.SiLU(),
            nn.Conv2d(2 * w, 4 * w, 3, padding=1, stride=2), nn.BatchNorm2d(4 * w), nn.SiLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * w, feat), nn.SiLU())
        self.head = nn.Linear(feat, classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


# ------------------------------------------------------------------------------------ labels
def labelled(spec: dict, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (model space) and labels of a dataset whose labels rectflow can read (all its
    classes: a class subset such as digits:3 is scored by the whole dataset's classifier)."""
    ds = load_dataset({k: v for k, v in spec.items() if k != "classes"}, split)
    name = spec["name"]
    y = labels({k: v for k, v in spec.items() if k != "classes"}, split)
    if len(y) != len(ds):
        raise DataError(f"{name} {split}: {len(ds)} images but {len(y)} labels")
    return ds.take(torch.arange(len(ds))), y


# ------------------------------------------------------------------------- train or load
def _accuracy(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    net.eval()
    with torch.inference_mode():
        pred = torch.cat([net(x[i:i + 1024]).argmax(1) for i in range(0, len(x), 1024)])
    return float((pred == y).float().mean())


@contextmanager
def _one_thread():
    """Batches of 64 tiny images gain nothing from intra-op threads, and on a shared machine
    threads make them 10x slower; training runs single-threaded, then the setting returns."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def train_classifier(spec: dict, callback: Callable[[dict], None] | None = None
                     ) -> tuple[Classifier, dict]:
    """Train the feature classifier of a dataset from a fixed seed; returns it and its record."""
    name = spec["name"]
    return fit_classifier(name, *labelled(spec, "train"), *labelled(spec, "test"), TRAIN[name],
                          callback)


def fit_classifier(name: str, x: torch.Tensor, y: torch.Tensor, xt: torch.Tensor,
                   yt: torch.Tensor, hp: dict, callback: Callable[[dict], None] | None = None
                   ) -> tuple[Classifier, dict]:
    """A feature classifier trained from the fixed seed on images ``x`` (model space) and
    labels ``y`` (``hp``: width, epochs, batch_size, lr, as in :data:`TRAIN`), its accuracy
    measured on ``xt``, ``yt``: the one training of every dataset's classifier, also of a
    labelled set a caller made itself (a benchmark's generated images)."""
    # also when the caller runs under no_grad or inference_mode
    with _one_thread(), torch.inference_mode(False), torch.enable_grad():
        return _fit_classifier(name, x, y, xt, yt, hp, callback)


def _fit_classifier(name, x, y, xt, yt, hp, callback) -> tuple[Classifier, dict]:
    hp = {**hp, "epochs": smoke.tiny("classifier_epochs", hp["epochs"])}
    x = x.clone()   # a normal tensor even when made under inference_mode: autograd saves it
    with torch.random.fork_rng(devices=[]):   # seeded init; the global RNG is left as it was
        torch.manual_seed(SEED)
        net = Classifier(x.shape[1], width=hp["width"])
    opt = torch.optim.Adam(net.parameters(), lr=hp["lr"])
    steps_per_epoch = -(-len(x) // hp["batch_size"])
    total = hp["epochs"] * steps_per_epoch
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=hp["lr"], total_steps=total)
    started = time.perf_counter()
    if callback:
        callback({"event": "start", "total": total, "label": f"{name} feature classifier"})
    step = 0
    for epoch in range(hp["epochs"]):
        net.train()
        perm = torch.randperm(len(x), generator=generator(SEED, "features", name, epoch))
        for i in range(0, len(x), hp["batch_size"]):
            idx = perm[i:i + hp["batch_size"]]
            loss = F.cross_entropy(net(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
        if callback:
            callback({"event": "progress", "done": step})
    record = {"dataset": name, "seed": SEED, "net": {"channels": x.shape[1], "width": hp["width"],
              "feat": 64}, "train": hp, "train_size": len(x), "test_size": len(xt),
              "test_accuracy": _accuracy(net, xt, yt),
              "seconds": time.perf_counter() - started}
    return net.eval(), record


def cache_name(spec: dict) -> str:
    """The cache folder of a dataset's classifier: its name, plus the size when the images are
    resized (``digits-16px-1ch``), so a resized set is scored by a classifier of its own size."""
    tag = "-smoke" if smoke.on() else ""   # a smoke run's classifier is never reused by a real one
    if "resolution" not in spec and "channels" not in spec:
        return spec["name"] + tag
    return f"{spec['name']}-{spec.get('resolution', 'native')}px-{spec.get('channels', 'native')}ch{tag}"


def classifier(spec: dict, root: str | Path, callback: Callable[[dict], None] | None = None
               ) -> tuple[Classifier | None, dict]:
    """The cached classifier of the dataset ``spec`` names, under ``root`` (trained and cached
    on first use). Datasets without readable labels get ``(None, {"reason": ...})``."""
    dataset = spec["name"]
    if dataset not in FEATURE_SETS:
        return None, {"reason": f"no feature classifier for {dataset!r} (only "
                                f"{', '.join(FEATURE_SETS)}); pass --fid-weights for FID"}
    return cached_net(Path(root) / cache_name(spec), ClassifierCache, Classifier,
                      lambda: train_classifier(spec, callback))


def cached_net(folder: Path, record: type, build: Callable[..., nn.Module],
               train: Callable[[], tuple[nn.Module, dict]]) -> tuple[nn.Module, dict]:
    """The feature network cached in ``folder`` (``config.json``, a ``record``, and
    ``model.safetensors``; ``build(**record.net)`` makes the network), else ``train()``'s,
    written there through rectflow's one writer. Returns it and its record with ``path``."""
    cfg_path, weights = folder / "config.json", folder / "model.safetensors"
    if cfg_path.is_file() and weights.is_file():
        saved = record.read(cfg_path).to_json()
        net = build(**saved["net"])
        ckpt.load_weights(net, weights)
        return net.eval(), {**saved, "path": str(folder)}
    net, made = train()
    made["sha256"] = ckpt.save_tensors(weights, net.state_dict())
    record(**made).write(cfg_path)
    return net, {**made, "path": str(folder)}


# ------------------------------------------------------------------------- Fréchet distance
DATA_RANGE = (-1.0, 1.0)   # rectflow's model space for images
SQRTM_IMAG_TOL = 1e-3      # largest |imaginary part| of sqrt(S_a S_b), relative to its trace


class FrechetError(UserError):
    """The matrix square root of a Fréchet distance is not trustworthy (covariances too
    singular for the number of samples, or not covariances at all)."""


class Extractor:
    """Mean and covariance of a feature map over a set of images, in float64.

    Images are clamped to ``data_range`` first: generated images may overshoot the data's
    range, and the feature network has only ever seen the range of the data (real images are
    unchanged by it). ``data_range=None`` turns the clamp off."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], batch: int = 256,
                 data_range: tuple[float, float] | None = DATA_RANGE):
        self.fn, self.batch, self.data_range = fn, batch, data_range

    def features(self, x: torch.Tensor) -> np.ndarray:
        if self.data_range is not None:
            x = x.clamp(*self.data_range)
        with torch.inference_mode():
            return torch.cat([self.fn(x[i:i + self.batch]).double().flatten(1)
                              for i in range(0, len(x), self.batch)]).numpy()

    def stats(self, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        f = self.features(x)
        return f.mean(0), np.cov(f, rowvar=False)


def _sqrtm_product(s1: np.ndarray, s2: np.ndarray) -> np.ndarray:
    """Real part of (S_a S_b)^(1/2), after checking its imaginary part is negligible."""
    from scipy import linalg
    covmean = linalg.sqrtm(s1 @ s2)
    if not np.isfinite(covmean).all():   # near-singular product: regularise, as pytorch-fid
        eps = 1e-6 * np.eye(s1.shape[0])
        covmean = linalg.sqrtm((s1 + eps) @ (s2 + eps))
    if not np.isfinite(covmean).all():
        raise FrechetError("Fréchet distance: sqrtm(S_a S_b) is not finite even after adding "
                           "1e-6 I; the feature covariances are degenerate")
    if np.iscomplexobj(covmean):
        imag = float(np.abs(covmean.imag).max())
        scale = max(abs(float(np.trace(covmean.real))), 1e-12)
        if imag > SQRTM_IMAG_TOL * scale:
            raise FrechetError(f"Fréchet distance: sqrtm(S_a S_b) has an imaginary part "
                               f"{imag:.3g} = {imag / scale:.3g} x its trace (limit "
                               f"{SQRTM_IMAG_TOL:g}); use more samples than feature dimensions")
    return np.real(covmean)


def frechet_distance(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> float:
    """|mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2)) between two fitted Gaussians.
    Raises :class:`FrechetError` when the square root's imaginary part is not negligible."""
    (mu1, s1), (mu2, s2) = a, b
    covmean = _sqrtm_product(s1, s2)
    return float(max(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2)
                     - 2 * np.trace(covmean), 0.0))


def fd_floor(extractor: Extractor, held_out: torch.Tensor, train: torch.Tensor, n: int,
             seed: int = 0, repeats: int = 1, samples: int | None = None):
    """The noise floor of the Fréchet distance at ``n`` samples: FD between ``n`` held-out
    images and ``n`` training images (random subsets drawn from ``generator(seed, ...)``),
    over ``repeats`` draws, as a :class:`rectflow.core.metrics.Summary`. A model cannot be told
    apart from the data at this ``n`` once its FD is within this floor. ``samples``: the
    training images per draw when a model is scored with another number of samples than
    ``n`` held-out images (default ``n``)."""
    from ..core.metrics import summarize
    m = n if samples is None else samples
    if n < 2 or m < 2 or n > len(held_out) or m > len(train):
        raise UserError(f"the FD floor at n={n}, samples={m} needs 2 <= n <= held-out "
                        f"({len(held_out)}) and 2 <= samples <= train ({len(train)})")
    vals = []
    for r in range(repeats):
        g = generator(seed, "fd-floor", r)
        a = held_out[torch.randperm(len(held_out), generator=g)[:n]]
        b = train[torch.randperm(len(train), generator=g)[:m]]
        vals.append(frechet_distance(extractor.stats(a), extractor.stats(b)))
    return summarize(vals)


def inception(weights: str | Path) -> Callable[[torch.Tensor], torch.Tensor]:
    """The 2048-d pool features of torchvision's Inception-v3 with weights from a safetensors
    file (no unpickling). Model-space images in [-1, 1] are what those weights expect (with
    ``transform_input=False``); grey images are repeated to 3 channels and all are resized
    to 299 x 299 bilinearly."""
    from torchvision.models import inception_v3
    net = inception_v3(weights=None, aux_logits=True, init_weights=False)
    ckpt.load_weights(net, weights)
    net.fc = nn.Identity()
    net.eval()

    def fn(x: torch.Tensor) -> torch.Tensor:
        x = x.clamp(-1, 1)
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        return net(x)
    return fn
