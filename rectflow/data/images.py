"""Image datasets: scikit-learn digits, MNIST, CIFAR-10 and a folder of image files.

Every loader returns an :class:`ArrayDataset` with ``is_image=True`` and data shaped
[N, C, H, W]. Files on disk are parsed with numpy (IDX for MNIST, the binary distribution for
CIFAR-10): rectflow never unpickles a user's file. torchvision is used only to download.
"""
from __future__ import annotations

import gzip
import io
import math
import os
from pathlib import Path

import numpy as np
import torch

from ..io.files import atomic_write_bytes
from ..errors import DataError
from .base import ArrayDataset, Normalization

SPLITS = ("train", "test")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
CIFAR10_BINARY_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
UINT8_NORMALIZATION = (127.5, 127.5)


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")


def _one_line(e: Exception) -> str:
    """An exception's message with newlines collapsed (DataError is shown as one line)."""
    return " ".join(str(e).split())


def _uint8_dataset(data: np.ndarray, name: str) -> ArrayDataset:
    return ArrayDataset(torch.from_numpy(np.ascontiguousarray(data)), name=name, is_image=True,
                        normalization=Normalization(*UINT8_NORMALIZATION))


# ---------------------------------------------------------------------------------- digits

def load_digits(split: str = "train") -> ArrayDataset:
    """scikit-learn's 8x8 digits as [N, 1, 8, 8] float32 in [-1, 1] (raw pixels are 0..16).

    A fixed permutation (seed 0) of the 1797 images gives 1500 "train" and 297 "test" images.
    """
    _check_split(split)
    from sklearn.datasets import load_digits as sk_load_digits

    images = torch.from_numpy(sk_load_digits().images).float()  # [1797, 8, 8], values 0..16
    perm = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))
    idx = perm[:1500] if split == "train" else perm[-297:]
    data = ((images[idx] - 8.0) / 8.0).unsqueeze(1).contiguous()
    return ArrayDataset(data, name="digits", is_image=True,
                        normalization=Normalization(shift=8.0, scale=8.0))


# ----------------------------------------------------------------------------------- MNIST

def _read_idx_images(path: Path) -> np.ndarray:
    """Parse an IDX3 image file (optionally gzipped) into uint8 [N, 1, rows, cols]."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError) as e:
        raise DataError(f"cannot read MNIST file {path}: {e}") from None
    if len(raw) < 16:
        raise DataError(f"{path} is too short to be an IDX image file ({len(raw)} bytes)")
    magic, n, rows, cols = (int(v) for v in np.frombuffer(raw, dtype=">u4", count=4))
    if magic != 2051:
        raise DataError(f"{path} is not an IDX image file: magic number {magic}, expected 2051")
    if len(raw) != 16 + n * rows * cols:
        raise DataError(f"{path} is truncated or corrupt: header says {n} images of "
                        f"{rows}x{cols} ({16 + n * rows * cols} bytes), file has {len(raw)} bytes")
    return np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(n, 1, rows, cols).copy()


def _find_mnist(raw_dir: Path, stem: str) -> Path | None:
    for candidate in (raw_dir / stem, raw_dir / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def load_mnist(root: str | os.PathLike, split: str = "train", download: bool = False
               ) -> ArrayDataset:
    """MNIST from torchvision's layout: ``root/MNIST/raw/{train,t10k}-images-idx3-ubyte[.gz]``.

    Returns uint8 [N, 1, 28, 28] (mapped to [-1, 1] on access).
    """
    _check_split(split)
    raw_dir = Path(root) / "MNIST" / "raw"
    stem = "train-images-idx3-ubyte" if split == "train" else "t10k-images-idx3-ubyte"
    path = _find_mnist(raw_dir, stem)
    if path is None and download:
        from torchvision.datasets import MNIST

        try:
            MNIST(str(root), train=split == "train", download=True)
        except (OSError, RuntimeError) as e:
            raise DataError(f"could not download MNIST into {root}: {_one_line(e)}") from None
        path = _find_mnist(raw_dir, stem)
    if path is None:
        raise DataError(f"MNIST {split} images not found: expected {raw_dir / stem} (or .gz); "
                        f"pass --download to fetch MNIST into {root}")
    return _uint8_dataset(_read_idx_images(path), "mnist")


# -------------------------------------------------------------------------------- CIFAR-10

def load_cifar10(root: str | os.PathLike, split: str = "train", download: bool = False
                 ) -> ArrayDataset:
    """CIFAR-10 from the binary distribution in ``root/cifar-10-batches-bin``.

    Each record of ``data_batch_{1..5}.bin`` / ``test_batch.bin`` is 1 label byte followed by
    3072 image bytes in CHW order. Returns uint8 [N, 3, 32, 32].
    """
    _check_split(split)
    root = Path(root)
    folder = root / "cifar-10-batches-bin"
    names = ([f"data_batch_{i}.bin" for i in range(1, 6)] if split == "train"
             else ["test_batch.bin"])
    if not folder.is_dir() and download:
        from torchvision.datasets.utils import download_and_extract_archive

        try:
            download_and_extract_archive(CIFAR10_BINARY_URL, str(root))
        except (OSError, RuntimeError) as e:
            raise DataError(f"could not download CIFAR-10 into {root}: {_one_line(e)}") from None
    if not folder.is_dir():
        if (root / "cifar-10-batches-py").is_dir():
            raise DataError(
                f"{root / 'cifar-10-batches-py'} is the Python (pickle) distribution of CIFAR-10, "
                f"which rectflow does not load because unpickling can run code; extract the "
                f"binary archive cifar-10-binary.tar.gz ({CIFAR10_BINARY_URL}) into {root} "
                f"or pass --download")
        raise DataError(f"CIFAR-10 not found: expected the folder {folder} (from "
                        f"cifar-10-binary.tar.gz); pass --download to fetch it into {root}")
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise DataError(f"CIFAR-10 {split} files missing from {folder}: {', '.join(missing)}")
    batches = []
    for n in names:
        try:
            raw = np.fromfile(folder / n, dtype=np.uint8)
        except OSError as e:
            raise DataError(f"cannot read CIFAR-10 file {folder / n}: {e}") from None
        if raw.size == 0 or raw.size % 3073:
            raise DataError(f"{folder / n} is not a CIFAR-10 binary batch: {raw.size} bytes is "
                            f"not a positive multiple of 3073 (1 label byte + 3072 pixel bytes)")
        batches.append(raw.reshape(-1, 3073)[:, 1:].reshape(-1, 3, 32, 32))
    return _uint8_dataset(np.concatenate(batches), "cifar10")


# ---------------------------------------------------------------------------- image folder
GREY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")


def _image_files(root: Path) -> list[Path]:
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist or is not a directory")
    files = sorted((p for p in root.rglob("*")
                    if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()),
                   key=lambda p: p.relative_to(root).as_posix())
    if not files:
        raise DataError(f"no images found under {root}: expected files ending in "
                        f"{', '.join(IMAGE_SUFFIXES)}")
    return files


def folder_shape(root: str | os.PathLike) -> tuple[int, int, list[str]]:
    """The resolution and channels a folder of images is read at, from the file headers
    alone, and one-line notes on what that involves: the most common size (centre-cropped to
    a square of its shorter side) when sizes differ, RGB when any image is in colour."""
    from collections import Counter

    from PIL import Image

    files = _image_files(Path(root))
    sizes, grey = Counter(), 0
    for p in files:
        try:
            with Image.open(p) as im:
                sizes[im.size] += 1
                grey += im.mode in GREY_MODES
        except (OSError, ValueError, Image.DecompressionBombError) as e:
            raise DataError(f"cannot read image {p}: {_one_line(e)}") from None
    (w, h), count = sizes.most_common(1)[0]
    res, channels, notes = min(w, h), 1 if grey == len(files) else 3, []
    if len(sizes) > 1:
        notes.append(f"images in {root} have {len(sizes)} sizes; all resized to {res}x{res}, "
                     f"the most common ({w}x{h}, {count} of {len(files)})"
                     + ("" if w == h else ", centre-cropped to a square"))
    elif w != h:
        notes.append(f"images in {root} are {w}x{h}; centre-cropped to {res}x{res}")
    if 0 < grey < len(files):
        notes.append(f"{grey} of {len(files)} images in {root} are grey; all read as RGB")
    return res, channels, notes


def load_image_folder(root: str | os.PathLike, resolution: int | None = None,
                      channels: int | None = None) -> ArrayDataset:
    """Every image under ``root`` (recursive, sorted), centre-cropped and resized to
    ``resolution`` x ``resolution``, as uint8 [N, channels, resolution, resolution]; the size
    and channels default to the folder's own (:func:`folder_shape`)."""
    from PIL import Image, ImageOps

    if channels not in (None, 1, 3):
        raise ValueError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels}")
    root = Path(root)
    files = _image_files(root)
    if resolution is None or channels is None:
        res, ch, _ = folder_shape(root)
        resolution, channels = resolution or res, channels or ch
    data = np.empty((len(files), resolution, resolution, channels), dtype=np.uint8)
    mode = "RGB" if channels == 3 else "L"
    for i, p in enumerate(files):
        try:
            with Image.open(p) as im:
                im = im.convert(mode)
                if im.size != (resolution, resolution):
                    im = ImageOps.fit(im, (resolution, resolution),
                                      method=Image.Resampling.BICUBIC)
                data[i] = np.asarray(im).reshape(resolution, resolution, channels)
        except (OSError, ValueError, Image.DecompressionBombError) as e:
            raise DataError(f"cannot read image {p}: {_one_line(e)}") from None
    return _uint8_dataset(data.transpose(0, 3, 1, 2), "imagefolder")


def resize_images(ds: ArrayDataset, resolution: int | None, channels: int | None
                  ) -> ArrayDataset:
    """``ds`` at another square ``resolution`` (antialiased bilinear) and/or number of
    ``channels`` (grey to RGB by copying, RGB to grey by luminance); unchanged when both match
    (or are None). uint8 data stays uint8."""
    c, h, w = ds.shape
    resolution, channels = resolution or h, channels or c
    if (resolution, resolution, channels) == (h, w, c):
        return ds
    if channels not in (1, 3) or c not in (1, 3):
        raise DataError(f"channels must be 1 (grey) or 3 (RGB), got {channels} (data has {c})")
    x = ds.data.float()
    if channels != c:
        x = x.repeat(1, 3, 1, 1) if c == 1 else \
            (x * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    if (h, w) != (resolution, resolution):
        x = torch.nn.functional.interpolate(x, size=(resolution, resolution), mode="bilinear",
                                            antialias=True, align_corners=False)
    if ds.data.dtype == torch.uint8:
        x = x.round().clamp(0, 255).to(torch.uint8)
    return ArrayDataset(x.contiguous(), name=ds.name, is_image=True,
                        normalization=ds.normalization)


# ------------------------------------------------------------------------------------ grid

def save_image_grid(x: torch.Tensor, path: str | os.PathLike, nrow: int | None = None) -> Path:
    """Write model-space images x in [-1, 1], shape [N, C, H, W], as one PNG grid.

    Tiles smaller than 32 px are upscaled by an integer factor (nearest neighbour). ``nrow`` is
    the number of images per row (default: about the square root of N). The file is written
    to a temporary name in the same folder and renamed into place.
    """
    from PIL import Image
    from torchvision.utils import make_grid

    if x.dim() != 4:
        raise ValueError(f"expected images of shape [N, C, H, W], got {tuple(x.shape)}")
    x = x.detach().float().cpu().clamp(-1, 1)
    factor = math.ceil(32 / min(x.shape[-2:]))
    if factor > 1:
        x = torch.nn.functional.interpolate(x, scale_factor=factor, mode="nearest")
    nrow = nrow or math.ceil(math.sqrt(x.shape[0]))
    grid = make_grid((x + 1) / 2, nrow=nrow, padding=2, pad_value=1.0)
    pixels = (grid * 255).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
    image = Image.fromarray(np.ascontiguousarray(pixels))

    buf = io.BytesIO()
    image.save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)
