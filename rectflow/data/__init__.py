"""Datasets by name or path, and a JSON spec that rebuilds them.

``--data`` accepts a toy name (``moons``, ``8gaussians``, ``checkerboard``, ``spirals``,
``circles``), ``digits``, ``mnist``, ``cifar10``, ``imagefolder`` (with a root), or a path: a
directory is an image folder, a ``.npy``/``.npz``/``.safetensors`` file a point cloud.
The source distribution is always N(0, I) of the data's shape.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import DataError
from .base import ArrayDataset, Dataset, Normalization
from .files import POINT_SUFFIXES, load_point_cloud
from .toy import TOY, ToyDataset

IMAGE_SETS = ("digits", "mnist", "cifar10", "imagefolder")
DATASETS = tuple(TOY) + IMAGE_SETS

__all__ = ["ArrayDataset", "Dataset", "Normalization", "DATASETS", "data_spec", "load_dataset"]


def data_spec(data: str, root: str | None = None, download: bool = False,
              resolution: int = 32, channels: int = 3) -> dict:
    """Turn the user's ``--data`` value into a JSON spec, checking it exists."""
    if data in TOY or data == "digits":
        return {"name": data}
    if data in ("mnist", "cifar10"):
        if root is None:
            raise DataError(f"--data {data} needs --data-root pointing at a local copy "
                            f"(torchvision's folder layout); add --download to fetch it")
        return {"name": data, "root": str(Path(root).resolve()), "download": bool(download)}
    if data == "imagefolder":
        if root is None:
            raise DataError("--data imagefolder needs --data-root, a folder of images")
        return {"name": "imagefolder", "root": str(Path(root).resolve()),
                "resolution": resolution, "channels": channels}
    p = Path(data)
    if p.suffix.lower() in POINT_SUFFIXES:
        if not p.is_file():
            raise DataError(f"point cloud file {p} does not exist")
        return {"name": "file", "path": str(p.resolve())}
    if p.is_dir():
        return {"name": "imagefolder", "root": str(p.resolve()),
                "resolution": resolution, "channels": channels}
    raise DataError(f"unknown dataset {data!r}: use one of {', '.join(DATASETS)}, "
                    f"a folder of images, or a {'/'.join(POINT_SUFFIXES)} file")


def load_dataset(spec: dict, split: str = "train") -> Dataset:
    """Build the dataset a spec describes. ``split='test'`` gives held-out data where the
    source has it (digits, MNIST, CIFAR-10); toy targets are infinite, and files and image
    folders have no split, so both splits are the same data there."""
    name = spec["name"]
    if name in TOY:
        return ToyDataset(name)
    from . import images  # torchvision and PIL only when images are used
    if name == "digits":
        return images.load_digits(split)
    if name == "mnist":
        return images.load_mnist(spec["root"], split, spec.get("download", False))
    if name == "cifar10":
        return images.load_cifar10(spec["root"], split, spec.get("download", False))
    if name == "imagefolder":
        return images.load_image_folder(spec["root"], spec.get("resolution", 32),
                                        spec.get("channels", 3))
    if name == "file":
        return load_point_cloud(spec["path"])
    raise DataError(f"unknown dataset {name!r} in spec")
