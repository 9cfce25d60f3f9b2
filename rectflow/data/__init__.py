"""Datasets by name or path, and a JSON spec that rebuilds them.

``--data`` accepts a toy name (``moons``, ``8gaussians``, ``checkerboard``, ``spirals``,
``circles``), ``digits``, ``mnist``, ``cifar10``, ``imagefolder`` (with a root), or a path: a
directory is an image folder, a ``.npy``/``.npz``/``.safetensors`` file a point cloud.
The source distribution is always N(0, I) of the data's shape.

Held-out data: digits, MNIST and CIFAR-10 have their own test split; files and image folders
get one here, a seeded ``heldout`` fraction (default 10 %) recorded in the spec, never trained
on; toy targets are infinite, so fresh draws are held out by construction.
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..errors import DataError
from ..seeding import generator
from .base import ArrayDataset, Dataset, Normalization
from .classes import class_subset, parse_classes
from .files import POINT_SUFFIXES, load_point_cloud
from .toy import TOY, ToyDataset

IMAGE_SETS = ("digits", "mnist", "cifar10", "imagefolder")
DATASETS = tuple(TOY) + IMAGE_SETS

__all__ = ["ArrayDataset", "Dataset", "Normalization", "DATASETS", "data_spec", "load_dataset"]


def data_spec(data: str, root: str | None = None, download: bool = False,
              resolution: int = 32, channels: int = 3) -> dict:
    """Turn the user's ``--data`` value into a JSON spec, checking it exists."""
    subset = parse_classes(data) if isinstance(data, str) else None
    if subset is not None:   # one class of a labelled dataset: digits:3
        return {**data_spec(subset[0], root, download, resolution, channels),
                "classes": subset[1]}
    if data in TOY or data == "digits":
        return {"name": data}
    if data in ("mnist", "cifar10"):
        if root is None:
            raise DataError(f"--data {data} needs --data-root pointing at a local copy "
                            f"(torchvision's folder layout); add --download to fetch it")
        return {"name": data, "root": str(Path(root).resolve()), "download": bool(download)}
    if channels not in (1, 3):
        raise DataError(f"channels must be 1 (grey) or 3 (RGB), got {channels}")
    if not 2 <= resolution <= 1024:
        raise DataError(f"resolution must be in 2..1024, got {resolution}")
    if data == "imagefolder":
        if root is None:
            raise DataError("--data imagefolder needs --data-root, a folder of images")
        return {"name": "imagefolder", "root": str(Path(root).resolve()),
                "resolution": resolution, "channels": channels, "heldout": HELDOUT}
    p = Path(data)
    if p.suffix.lower() in POINT_SUFFIXES:
        if not p.is_file():
            raise DataError(f"point cloud file {p} does not exist")
        return {"name": "file", "path": str(p.resolve()), "heldout": HELDOUT}
    if p.is_dir():
        return {"name": "imagefolder", "root": str(p.resolve()),
                "resolution": resolution, "channels": channels, "heldout": HELDOUT}
    raise DataError(f"unknown dataset {data!r}: use one of {', '.join(DATASETS)}, "
                    f"a folder of images, or a {'/'.join(POINT_SUFFIXES)} file")


HELDOUT = 0.1


def heldout_split(ds: ArrayDataset, fraction: float, split: str) -> ArrayDataset:
    """The seeded ``fraction`` of rows held out for evaluation (``split='test'``), or the rest
    (``'train'``). At least one row on each side."""
    n = len(ds)
    k = min(n - 1, max(1, round(n * fraction)))
    perm = torch.randperm(n, generator=generator(0, "heldout", n))
    idx = perm[:k] if split == "test" else perm[k:]
    return ArrayDataset(ds.data[idx.sort().values], name=ds.name, is_image=ds.is_image,
                        normalization=ds.normalization)


def load_dataset(spec: dict, split: str = "train", allow_download: bool = False) -> Dataset:
    """Build the dataset a spec describes. ``split='test'`` gives held-out data (see the module
    docstring). A spec read from a file never downloads: only ``allow_download`` (the user's
    own flag on this command) does."""
    name = spec.get("name")
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if name in TOY:
        return ToyDataset(name)
    from . import images  # torchvision and PIL only when images are used
    download = bool(spec.get("download", False)) and allow_download
    if name == "digits":
        ds = images.load_digits(split)
        return class_subset(ds, spec, split) if spec.get("classes") else ds
    if name == "mnist":
        return images.load_mnist(_path(spec, "root"), split, download)
    if name == "cifar10":
        return images.load_cifar10(_path(spec, "root"), split, download)
    if name == "imagefolder":
        ds = images.load_image_folder(_path(spec, "root"), spec.get("resolution", 32),
                                      spec.get("channels", 3))
    elif name == "file":
        ds = load_point_cloud(_path(spec, "path"))
    else:
        raise DataError(f"unknown dataset {name!r} in spec")
    frac = spec.get("heldout")
    return heldout_split(ds, float(frac), split) if frac else ds


def _path(spec: dict, key: str) -> str:
    value = spec.get(key)
    if not isinstance(value, str) or not value:
        raise DataError(f"data spec {spec.get('name')!r} needs a {key!r} path")
    if Path(value).resolve() == Path(Path(value).resolve().anchor):
        raise DataError(f"data {key} {value} is a filesystem root; refusing to scan it")
    return value
