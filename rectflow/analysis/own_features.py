"""A feature network for images rectflow has no classifier for: the user's own.

An image folder or image array has no shipped classifier, and pixel W2 against a few dozen
held-out images ranks a 1-step grey blob *above* a sharp sample (an average sits closer to
every image than any one image does). So rectflow trains a small network on the data's own
training split, once, and the evaluator reports the Fréchet distance of its features ("FD").

Its task needs no labels: each training image is left clean, blurred, noised or faded toward
the data's mean image, and the network predicts which. Those are the defects of a flow's
few-step or undertrained samples (the 1-step sample of a flow is an average: blurred and
faded; an unconverged one keeps noise), so its features place them far from the data. When
the data has classes (an image folder with one sub-folder per class, an ``.npz`` with labels)
a second head also predicts the class, so the features see the content too (a model that
draws only some classes moves them). The tests that chose this recipe are in
``tests/analysis/test_folder_features.py`` and its numbers in ``docs/evaluation.md``.

Seeded, single-threaded, 120 to 600 steps (seconds to a minute on a CPU); cached as ``model.safetensors`` +
``config.json`` (:class:`~rectflow.records.snapshot.FeatureNetCache`) in a folder named by the
sha256 of the data's images (both splits), so a changed folder trains a network of its own. FD
numbers compare only under the same network (its sha256 is in every ``eval.json``).
"""
from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .. import smoke
from ..core.seeding import generator
from ..data import load_dataset
from ..errors import DataError
from ..records.snapshot import FeatureNetCache
from .features import FEATURE_SETS, Classifier, _one_thread, cached_net, classifier

SEED = 0
DEGRADATIONS = ("clean", "blurred", "noised", "faded")
FEAT = 32          # feature dimensions: fewer than the few dozen held-out images of a folder
MAX_SIDE = 32      # larger images are average-pooled to this side first (cost, not detail:
#                    a 64 px net of width 32 took 1.1 s a step on a busy 2-core CPU, this 0.1 s)
TRAIN = {"epochs": 12, "min_steps": 120, "max_steps": 600, "batch_size": 64, "lr": 3e-3}
BLUR = (0.04, 0.12)    # Gaussian blur sigma, as a fraction of the image side
NOISE = (0.1, 0.5)     # noise std in model units ([-1, 1])
FADE = (0.2, 0.8)      # share of the image kept when faded toward the mean image


class FeatureNet(Classifier):
    """:class:`~rectflow.analysis.features.Classifier` whose head tells the degradations
    apart, with an optional class head (``labels`` classes) on the same features."""

    def __init__(self, channels: int, width: int = 16, feat: int = FEAT,
                 classes: int = len(DEGRADATIONS), labels: int = 0, side: int = MAX_SIDE):
        super().__init__(channels, width=width, feat=feat, classes=classes)
        self.side = side
        self.labels = nn.Linear(feat, labels) if labels else None

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] > self.side:
            x = F.adaptive_avg_pool2d(x, self.side)
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


# ------------------------------------------------------------------------------ the task
def blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of [N, C, H, W] with edge padding."""
    r = max(1, min(int(3 * sigma + 0.5), x.shape[-1] - 1, x.shape[-2] - 1))
    t = torch.arange(-r, r + 1, dtype=x.dtype)
    k = torch.exp(-t ** 2 / (2 * sigma ** 2))
    k = (k / k.sum()).repeat(x.shape[1], 1, 1, 1)
    c = x.shape[1]
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), k.view(c, 1, 1, -1), groups=c)
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="replicate"), k.view(c, 1, -1, 1), groups=c)


def degrade(x: torch.Tensor, k: torch.Tensor, mean: torch.Tensor,
            g: torch.Generator) -> torch.Tensor:
    """Row i of ``x`` with degradation ``k[i]`` (an index into :data:`DEGRADATIONS`) applied;
    strengths drawn from ``g``."""
    u = torch.rand(len(x), 1, 1, 1, generator=g, dtype=x.dtype)
    out = x.clone()
    m = k == 1
    if m.any():
        lo, hi = BLUR
        sigma = x.shape[-1] * (lo + (hi - lo) * float(torch.rand(1, generator=g)))
        out[m] = blur(x[m], sigma)
    m = k == 2
    if m.any():
        std = NOISE[0] + (NOISE[1] - NOISE[0]) * u[m]
        out[m] = (x[m] + std * torch.randn(x[m].shape, generator=g)).clamp(-1, 1)
    m = k == 3
    if m.any():
        a = FADE[0] + (FADE[1] - FADE[0]) * u[m]
        out[m] = a * x[m] + (1 - a) * mean
    return out


# ------------------------------------------------------------------------- data and cache
def _images(spec: dict, split: str) -> torch.Tensor:
    ds = load_dataset(spec, split)
    if not ds.is_image:
        raise DataError(f"{spec.get('name')!r} is not image data; FD needs images")
    return ds.take(torch.arange(len(ds))).float()


def _labels(spec: dict, n: int, nt: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Train and held-out labels when the data has at least two classes, else None."""
    from ..data.labels import has_labels, labels
    if not has_labels(spec):
        return None
    try:
        y, yt = labels(spec, "train"), labels(spec, "test")
    except DataError:   # e.g. images loose in the folder's root: no classes, no class head
        return None
    if len(y) != n or len(yt) != nt:
        raise DataError(f"{spec.get('name')}: {n} + {nt} images but {len(y)} + {len(yt)} labels")
    return (y, yt) if int(torch.cat([y, yt]).max()) >= 1 else None


def data_sha256(*splits: torch.Tensor) -> str:
    """sha256 of the images of the splits (model space, float32) and their shapes."""
    h = hashlib.sha256(str([list(x.shape) for x in splits]).encode())
    for x in splits:
        h.update(x.contiguous().numpy().tobytes())
    return h.hexdigest()


def cache_name(spec: dict, shape: tuple[int, ...], sha: str) -> str:
    tag = "-smoke" if smoke.on() else ""   # a smoke run's network is never reused by a real one
    c, _, w = shape
    return f"{spec['name']}-{w}px-{c}ch-{sha[:16]}{tag}"


def own_net(spec: dict, root: str | Path, callback: Callable[[dict], None] | None = None
            ) -> tuple[FeatureNet, dict]:
    """The feature network of the image data ``spec`` names (any image data), cached under
    ``root`` by the content of its training and held-out images; trained on first use."""
    spec = {k: v for k, v in spec.items() if k != "classes"}   # the whole data's network
    x, xt = _images(spec, "train"), _images(spec, "test")
    sha = data_sha256(x, xt)
    return cached_net(Path(root) / cache_name(spec, tuple(x.shape[1:]), sha), FeatureNetCache,
                      FeatureNet, lambda: train_own_net(spec, x, xt, sha, callback))


def feature_net(spec: dict, root: str | Path, callback: Callable[[dict], None] | None = None):
    """The FD feature network of any image data: the shipped dataset's classifier (digits,
    MNIST, CIFAR-10), else one trained on the data itself (:func:`own_net`)."""
    if spec.get("name") in FEATURE_SETS:
        return classifier(spec, root, callback)
    return own_net(spec, root, callback)


def feature_note(info: dict | None) -> str | None:
    """One line saying which network the FD features came from, or None."""
    if not info or "test_accuracy" not in info:
        return None
    if info.get("objective"):
        labels = info.get("label_accuracy")
        return (f"FD features: network trained on this data's {info.get('train_size')} training "
                f"images ({info['objective']}), held-out accuracy {info['test_accuracy']:.1%}"
                + (f", classes {labels:.1%}" if labels is not None else "")
                + "; FD compares only under the same network")
    return (f"FD features: {info.get('dataset')} classifier, held-out accuracy "
            f"{info['test_accuracy']:.1%}")


# ------------------------------------------------------------------------------ training
def train_own_net(spec: dict, x: torch.Tensor, xt: torch.Tensor, sha: str, callback=None
                  ) -> tuple[FeatureNet, dict]:
    """Train the feature network on the training images ``x`` of ``spec`` from a fixed seed
    (``xt``, the held-out images, measure its accuracy; ``sha`` is their content's sha256)."""
    # single-threaded, and also when the caller runs under no_grad or inference_mode
    with _one_thread(), torch.inference_mode(False), torch.enable_grad():
        net, record = _train(spec, x, xt, callback)
    return net, {**record, "data_sha256": sha}


def _train(spec: dict, x: torch.Tensor, xt: torch.Tensor, callback) -> tuple[FeatureNet, dict]:
    ys = _labels(spec, len(x), len(xt))
    c, _, side = x.shape[1:]
    hp = dict(TRAIN)
    per_epoch = -(-len(x) // hp["batch_size"])
    total = min(max(hp["epochs"] * per_epoch, hp["min_steps"]), hp["max_steps"])
    if smoke.on():
        total = min(total, smoke.tiny("classifier_epochs", hp["epochs"]) * per_epoch)
    net_cfg = {"channels": c, "width": 16, "feat": FEAT,
               "classes": len(DEGRADATIONS), "side": min(side, MAX_SIDE),
               **({"labels": int(torch.cat(ys).max()) + 1} if ys else {})}
    with torch.random.fork_rng(devices=[]):   # seeded init; the global RNG is left as it was
        torch.manual_seed(SEED)
        net = FeatureNet(**net_cfg)
    mean = x.mean(0, keepdim=True)
    opt = torch.optim.Adam(net.parameters(), lr=hp["lr"])
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=hp["lr"], total_steps=total)
    emit = callback or (lambda e: None)
    emit({"event": "start", "total": total, "label": f"{spec['name']} feature network"})
    started, step, epoch = time.perf_counter(), 0, 0
    net.train()
    while step < total:
        g = generator(SEED, "own-features", epoch)
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), hp["batch_size"]):
            idx = perm[i:i + hp["batch_size"]]
            k = torch.randint(len(DEGRADATIONS), (len(idx),), generator=g)
            f = net.features(degrade(x[idx], k, mean, g))
            loss = F.cross_entropy(net.head(f), k)
            if ys:
                loss = loss + F.cross_entropy(net.labels(f), ys[0][idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if step == total:
                break
        epoch += 1
        emit({"event": "progress", "done": step})
    net.eval()
    acc, label_acc = _accuracy(net, xt, mean, ys[1] if ys else None)
    return net, {"dataset": spec["name"], "seed": SEED, "net": net_cfg,
                 "objective": "degradation" + ("+classes" if ys else ""),
                 "train": {**hp, "steps": total}, "train_size": len(x), "test_size": len(xt),
                 "test_accuracy": acc, "label_accuracy": label_acc,
                 "seconds": time.perf_counter() - started}


def _accuracy(net: FeatureNet, xt: torch.Tensor, mean: torch.Tensor,
              yt: torch.Tensor | None) -> tuple[float, float | None]:
    """Accuracy on the held-out images, each degradation in turn; and of the class head."""
    k = torch.arange(len(xt)) % len(DEGRADATIONS)
    with torch.inference_mode():
        xd = degrade(xt, k, mean, generator(SEED, "own-features-test"))
        acc = float((net(xd).argmax(1) == k).float().mean())
        if yt is None:
            return acc, None
        return acc, float((net.labels(net.features(xt)).argmax(1) == yt).float().mean())
