"""Class labels of every dataset that has them, aligned row for row with its loader.

* ``digits``, ``mnist``, ``cifar10``: the datasets' own labels (read as in
  :mod:`rectflow.analysis.features`, never unpickled);
* an image folder: its first-level sub-folders, one class each (sorted by name); an image
  directly under the root has no class and is refused for conditional training;
* an ``.npz`` file: an integer array named ``y`` or ``labels`` beside the points (the class
  names are the sorted distinct values, as text);
* the 2-D mixtures: ``8gaussians`` (the index k of the component at angle k·π/4) and
  ``moons`` (``upper`` / ``lower``), drawn by :func:`sample_toy` together with the point.

Labels are class indices 0..C-1; :data:`NULL` is not a label: a conditional model reserves
index C for "no label" (see :mod:`rectflow.core.guidance`).
"""
from __future__ import annotations

import gzip

import math
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from .classes import digit_labels
from ..core.seeding import generator

LABEL_KEYS = ("y", "labels")
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck"]
TOY_CLASSES = {"8gaussians": [str(k) for k in range(8)], "moons": ["upper", "lower"]}
DIGIT_CLASSES = [str(k) for k in range(10)]


def has_labels(spec: dict) -> bool:
    name = spec.get("name")
    return name in TOY_CLASSES or name in ("digits", "mnist", "cifar10", "imagefolder") or (
        name == "file" and str(spec.get("path", "")).lower().endswith(".npz"))


def _refuse(spec: dict) -> DataError:
    return DataError(f"dataset {spec.get('name')!r} has no class labels; conditional training "
                     "takes digits, mnist, cifar10, an image folder with one sub-folder per "
                     "class, an .npz with a 'y' or 'labels' array, 8gaussians or moons")


def class_names(spec: dict) -> list[str]:
    """The classes of the dataset ``spec`` names, in label order."""
    name = spec.get("name")
    if name in TOY_CLASSES:
        return list(TOY_CLASSES[name])
    if name in ("digits", "mnist"):
        return list(DIGIT_CLASSES)
    if name == "cifar10":
        return list(CIFAR10_CLASSES)
    if name == "imagefolder":
        return sorted({k for k in _folder_keys(Path(spec["root"]))})
    if name == "file" and has_labels(spec):
        return [str(v) for v in np.unique(_npz_labels(Path(spec["path"])))]
    raise _refuse(spec)


def labels(spec: dict, split: str = "train") -> torch.Tensor:
    """Class indices [N] of a finite dataset's ``split``, in the row order of
    :func:`rectflow.data.load_dataset`."""
    name = spec.get("name")
    if name == "digits":
        return digit_labels(split).long()
    if name == "mnist":
        return _mnist_labels(spec["root"], split)
    if name == "cifar10":
        return _cifar10_labels(spec["root"], split)
    if name == "imagefolder":
        keys = _folder_keys(Path(spec["root"]))
        index = {c: i for i, c in enumerate(sorted(set(keys)))}
        y = torch.tensor([index[k] for k in keys], dtype=torch.int64)
    elif name == "file" and has_labels(spec):
        raw = _npz_labels(Path(spec["path"]))
        y = torch.from_numpy(np.searchsorted(np.unique(raw), raw).astype(np.int64))
    else:
        raise _refuse(spec)
    frac = spec.get("heldout")
    return y[_heldout_rows(len(y), float(frac), split)] if frac else y


def _heldout_rows(n: int, fraction: float, split: str) -> torch.Tensor:
    """The rows :func:`rectflow.data.heldout_split` keeps, in the same order."""
    k = min(n - 1, max(1, round(n * fraction)))
    perm = torch.randperm(n, generator=generator(0, "heldout", n))
    return (perm[:k] if split == "test" else perm[k:]).sort().values


def _folder_keys(root: Path) -> list[str]:
    """The class (first sub-folder) of every image, in the image folder loader's order."""
    from .images import IMAGE_SUFFIXES
    files = sorted((p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES
                    and p.is_file()), key=lambda p: p.relative_to(root).as_posix())
    parts = [p.relative_to(root).parts for p in files]
    loose = [p for p in parts if len(p) < 2]
    if loose:
        raise DataError(f"{root / loose[0][0]} is not in a class sub-folder; a conditional "
                        "image folder holds one sub-folder per class")
    return [p[0] for p in parts]


def _npz_labels(path: Path) -> np.ndarray:
    with np.load(path, allow_pickle=False) as z:
        key = next((k for k in LABEL_KEYS if k in z.files), None)
        if key is None:
            raise DataError(f"{path} has no label array (named {' or '.join(LABEL_KEYS)})")
        y = z[key]
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{path}: labels must be whole numbers of shape [N], got "
                        f"{y.dtype} {list(y.shape)}")
    return y


def sample_toy(name: str, n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` points of a labelled 2-D mixture and their component, from ``g`` alone; the
    points are distributed exactly as :mod:`rectflow.data.toy` draws them."""
    if name == "8gaussians":
        k = torch.randint(8, (n,), generator=g)
        angle = k.float() * (math.pi / 4)
        x = 4.0 * torch.stack([torch.cos(angle), torch.sin(angle)], 1)
        return x + 0.5 * torch.randn(n, 2, generator=g), k
    if name == "moons":
        from .toy import _MOONS_MEAN, _MOONS_NOISE, _MOONS_STD
        theta = torch.rand(n, generator=g) * math.pi
        lower = torch.rand(n, generator=g) >= 0.5
        c, s = torch.cos(theta), torch.sin(theta)
        pts = torch.where(lower[:, None], torch.stack([1 - c, 0.5 - s], 1), torch.stack([c, s], 1))
        pts = pts + _MOONS_NOISE * torch.randn(n, 2, generator=g)
        return (pts - torch.tensor(_MOONS_MEAN)) / torch.tensor(_MOONS_STD), lower.long()
    raise DataError(f"{name!r} is not a labelled 2-D mixture ({', '.join(TOY_CLASSES)})")


def prior(spec: dict) -> torch.Tensor:
    """Class frequencies of the training data (uniform for the 2-D mixtures): the law the
    labels of stored pairs and of evaluation samples are drawn from."""
    if spec.get("name") in TOY_CLASSES:
        c = len(TOY_CLASSES[spec["name"]])
        return torch.full((c,), 1.0 / c, dtype=torch.float64)
    y = labels(spec, "train")
    counts = torch.bincount(y, minlength=len(class_names(spec))).double()
    return counts / counts.sum()


def _mnist_labels(root: str, split: str) -> torch.Tensor:
    stem = "train-labels-idx1-ubyte" if split == "train" else "t10k-labels-idx1-ubyte"
    raw_dir = Path(root) / "MNIST" / "raw"
    path = next((p for p in (raw_dir / stem, raw_dir / f"{stem}.gz") if p.is_file()), None)
    if path is None:
        raise DataError(f"MNIST {split} labels not found: expected {raw_dir / stem} (or .gz)")
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    magic, n = (int(v) for v in np.frombuffer(raw, dtype=">u4", count=2))
    if magic != 2049 or len(raw) != 8 + n:
        raise DataError(f"{path} is not an IDX label file")
    return torch.from_numpy(np.frombuffer(raw, dtype=np.uint8, offset=8).astype(np.int64))


def _cifar10_labels(root: str, split: str) -> torch.Tensor:
    folder = Path(root) / "cifar-10-batches-bin"
    names = ([f"data_batch_{i}.bin" for i in range(1, 6)] if split == "train"
             else ["test_batch.bin"])
    parts = [np.fromfile(folder / n, dtype=np.uint8).reshape(-1, 3073)[:, 0] for n in names]
    return torch.from_numpy(np.concatenate(parts).astype(np.int64))
