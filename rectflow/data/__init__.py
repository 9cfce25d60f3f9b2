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
from typing import Callable

import torch

from ..errors import DataError
from ..options import data_kind  # noqa: F401 - the kind of a dataset's shape
from ..core.seeding import generator
from .base import ArrayDataset, Dataset, Normalization
from .classes import class_subset, parse_classes
from .files import POINT_STD, POINT_SUFFIXES, array_shape, is_image_array, load_point_cloud
from .toy import TOY, ToyDataset

IMAGE_SETS = ("digits", "mnist", "cifar10", "imagefolder")
DATASETS = tuple(TOY) + IMAGE_SETS

__all__ = ["ArrayDataset", "Dataset", "Normalization", "DATASETS", "data_kind", "data_spec", "kind_of_data",
           "load_dataset"]


NATIVE = {"digits": (8, 1), "mnist": (28, 1), "cifar10": (32, 3)}   # resolution, channels


def data_spec(data: str, root: str | None = None, download: bool = False,
              resolution: int | None = None, channels: int | None = None,
              note: Callable[[str], None] | None = None) -> dict:
    """Turn the user's ``--data`` value into a JSON spec, checking it exists.

    Images are read at their own resolution and channels (a folder's most common size, an
    array's [C, H, W]) unless ``resolution``/``channels`` are given; ``note`` receives one line
    for each thing the user should know (a resize, mixed sizes, grey read as RGB). ``name:c``
    (``digits:3``) is class ``c`` of a labelled dataset."""
    subset = parse_classes(data) if isinstance(data, str) else None
    if subset is not None:   # one class of a labelled dataset: digits:3
        return {**data_spec(subset[0], root, download, resolution, channels, note),
                "classes": subset[1]}
    note = note or (lambda text: None)
    if channels is not None and channels not in (1, 3):
        raise DataError(f"channels must be 1 (grey) or 3 (RGB), got {channels}")
    if resolution is not None and not MIN_RES <= resolution <= MAX_RES:
        raise DataError(f"resolution must be in {MIN_RES}..{MAX_RES}, got {resolution}")
    if data in TOY:
        return {"name": data}
    if data in NATIVE:
        spec = {"name": data}
        if data != "digits":
            if root is None:
                raise DataError(f"--data {data} needs --data-root pointing at a local copy "
                                f"(torchvision's folder layout); add --download to fetch it")
            spec.update(root=str(Path(root).resolve()), download=bool(download))
        return {**spec, **_resized(data, *NATIVE[data], resolution, channels, note)}
    p = Path(root) if data == "imagefolder" else Path(data)
    if data == "imagefolder" and root is None:
        raise DataError("--data imagefolder needs --data-root, a folder of images")
    if p.suffix.lower() in POINT_SUFFIXES and data != "imagefolder":
        if not p.is_file():
            raise DataError(f"point cloud file {p} does not exist")
        spec = {"name": "file", "path": str(p.resolve()), "heldout": HELDOUT}
        shape = array_shape(p)
        if not is_image_array(shape):
            return {**spec, "std": POINT_STD}   # a spec without it: unit std (older runs)
        c = 1 if len(shape) == 3 else shape[1]
        return {**spec, **_resized(str(p), shape[-1], c, resolution, channels, note, True)}
    if p.is_dir():
        from .images import folder_shape
        res, ch, notes = folder_shape(p)
        for text in notes:
            note(text)
        return {"name": "imagefolder", "root": str(p.resolve()),
                **_resized(str(p), res, ch, resolution, channels, note, True),
                "heldout": HELDOUT}
    raise DataError(f"unknown dataset {data!r}: use one of {', '.join(DATASETS)}, "
                    f"a folder of images, or a {'/'.join(POINT_SUFFIXES)} file")


def _resized(what: str, res: int, ch: int, resolution: int | None, channels: int | None,
             note: Callable[[str], None], always: bool = False) -> dict:
    """The spec's ``resolution``/``channels``: the data's own unless given; a given one that
    differs is noted. Named datasets record them only when they differ from their own."""
    if resolution is None and not MIN_RES <= res <= MAX_RES:   # read from the data itself
        raise DataError(f"{what}: images are {res}x{res} px, outside the {MIN_RES}..{MAX_RES} "
                        "px rectflow trains on; pass --resolution to resize them")
    out = {"resolution": resolution or res, "channels": channels or ch}
    if out["resolution"] != res:
        note(f"{what}: images are {res}x{res}; resized to {out['resolution']}x"
             f"{out['resolution']} (resolution given)")
    if out["channels"] != ch:
        note(f"{what}: images have {ch} channel{'s' * (ch > 1)}; read as "
             f"{'RGB' if out['channels'] == 3 else 'grey'} (channels given)")
    if not always and out == {"resolution": res, "channels": ch}:
        return {}
    return out


def kind_of_data(data: str | None) -> str:
    """``image`` or ``vector``: the kind of data a ``--data`` value names, without reading it
    all (an array file's shape is read from its header)."""
    if data is None or data in IMAGE_SETS or Path(data).is_dir():
        return "image" if data is not None else "vector"
    if Path(data).suffix.lower() in POINT_SUFFIXES and Path(data).is_file():
        return "image" if is_image_array(array_shape(data)) else "vector"
    return "vector"


def spec_shape(spec: dict) -> tuple[int, ...]:
    """The shape of one sample of the data ``spec`` names, from headers alone."""
    name = spec.get("name")
    if name in TOY:
        return (2,)
    if name in NATIVE or "resolution" in spec:
        res, ch = NATIVE.get(name, (None, None))
        r, c = spec.get("resolution", res), spec.get("channels", ch)
        return (c, r, r)
    shape = array_shape(spec["path"])
    return tuple(shape[1:]) if len(shape) == 2 else (1, *shape[1:]) if len(shape) == 3 \
        else tuple(shape[1:])


HELDOUT = 0.1
MIN_RES, MAX_RES = 2, 1024   # image resolutions rectflow trains on (given or read from data)


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
    size = spec.get("resolution"), spec.get("channels")
    if name == "digits":
        ds = images.load_digits(split)
    elif name == "mnist":
        ds = images.load_mnist(_path(spec, "root"), split, download)
    elif name == "cifar10":
        ds = images.load_cifar10(_path(spec, "root"), split, download)
    elif name == "imagefolder":
        ds = images.load_image_folder(_path(spec, "root"), *size)
    elif name == "file":
        ds = load_point_cloud(_path(spec, "path"), _point_std(spec))
    else:
        raise DataError(f"unknown dataset {name!r} in spec")
    if ds.is_image and size != (None, None):
        ds = images.resize_images(ds, *size)
    if spec.get("classes"):
        ds = class_subset(ds, spec, split)
    frac = spec.get("heldout")
    if frac and len(ds) < 2:   # one to train on and one held out, or every metric is NaN
        what = spec.get("root") or spec.get("path") or name
        raise DataError(f"{what} holds {len(ds)} sample{'s' * (len(ds) != 1)}"
                        f"{' of the chosen classes' if spec.get('classes') else ''}; rectflow "
                        "needs at least 2 (one is held out for evaluation)")
    return heldout_split(ds, float(frac), split) if frac else ds


def _point_std(spec: dict) -> float:
    """A file spec's ``std`` (model-space spread of a point cloud); 1 when absent (older runs)."""
    std = spec.get("std", 1.0)
    if isinstance(std, bool) or not isinstance(std, (int, float)) or not 0 < std < 1e6:
        raise DataError(f"data spec {spec.get('path')!r}: std must be a number > 0, got {std!r}")
    return float(std)


def _path(spec: dict, key: str) -> str:
    value = spec.get(key)
    if not isinstance(value, str) or not value:
        raise DataError(f"data spec {spec.get('name')!r} needs a {key!r} path")
    if Path(value).resolve() == Path(Path(value).resolve().anchor):
        raise DataError(f"data {key} {value} is a filesystem root; refusing to scan it")
    return value
