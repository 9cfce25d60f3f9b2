"""Inputs a user hands to invert/translate/interpolate, and outputs in the same formats.

An input is an array file (``.npy``, ``.npz``, ``.safetensors``: one array ``[N, *shape]`` or a
single ``[*shape]`` point, read without pickle) in its distribution's own units, or an image
file (``.png``, ``.jpg``, ...) in 8-bit pixels, resized like an image folder's images to the
model's resolution. A folder stands for the array and image files directly inside it (sorted).
Outputs keep each input's file name and format.
"""
from __future__ import annotations

import io as _bytes
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import Normalization
from .files import POINT_SUFFIXES, read_array
from .images import IMAGE_SUFFIXES, UINT8_NORMALIZATION
from ..errors import DataError, UserError

PIXELS = Normalization(*UINT8_NORMALIZATION)   # 8-bit pixels <-> [-1, 1]
PIL_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP", ".webp": "WEBP"}


@dataclass
class Item:
    """One input file: its rows in model units, and how to write its outputs back."""
    path: Path
    x: torch.Tensor          # [k, *shape] in model units
    image: bool              # an image file (8-bit pixels) rather than an array
    single: bool             # an array file holding one point without a batch axis

    @property
    def name(self) -> str:
        return self.path.name


def expand(paths: list[str | Path]) -> list[Path]:
    """Files as given; a folder as the array and image files directly inside it."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(f for f in p.iterdir() if f.is_file()
                            and f.suffix.lower() in POINT_SUFFIXES + IMAGE_SUFFIXES)
        elif p.is_file():
            files.append(p)
        else:
            raise DataError(f"input {p} does not exist")
    if not files:
        raise DataError("no input files (arrays .npy/.npz/.safetensors or images)")
    names = [f.name for f in files]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise UserError(f"inputs share the file name(s) {', '.join(twice)}; outputs keep input "
                        "names, so give each a different name")
    return files


def _read_image(path: Path, shape: tuple[int, ...]) -> torch.Tensor:
    from PIL import Image, ImageOps
    if len(shape) != 3:
        raise DataError(f"{path} is an image but the model is for vectors of shape {list(shape)}")
    c, h, w = shape
    try:
        with Image.open(path) as im:
            im = ImageOps.fit(im.convert("RGB" if c == 3 else "L"), (w, h),
                              method=Image.Resampling.BICUBIC)
            arr = np.asarray(im, dtype=np.float32).reshape(h, w, c).transpose(2, 0, 1)
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"cannot read image {path}: {e}") from None
    return PIXELS.to_model(torch.from_numpy(arr.copy()))[None]


def read_inputs(paths: list[str | Path], shape: tuple[int, ...],
                units: Normalization) -> list[Item]:
    """Every input file as model-unit rows; array values are mapped by ``units`` (the
    distribution's own units -> model), image pixels by the 8-bit map."""
    items = []
    for f in expand(paths):
        if f.suffix.lower() in IMAGE_SUFFIXES:
            items.append(Item(f, _read_image(f, shape), True, False))
            continue
        if f.suffix.lower() not in POINT_SUFFIXES:
            raise DataError(f"{f}: unknown input format; use {', '.join(POINT_SUFFIXES)} arrays "
                            f"or {', '.join(IMAGE_SUFFIXES)} images")
        arr = read_array(f)
        if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
            raise DataError(f"{f}: expected real numbers, got dtype {arr.dtype}")
        single = tuple(arr.shape) == tuple(shape)
        x = torch.from_numpy(np.asarray(arr, dtype=np.float32).copy())
        x = x[None] if single else x
        if tuple(x.shape[1:]) != tuple(shape) or x.shape[0] < 1:
            raise DataError(f"{f} holds an array of shape {list(arr.shape)}; the model maps "
                            f"points of shape {list(shape)} (give [N, {', '.join(map(str, shape))}])")
        if not bool(torch.isfinite(x).all()):
            raise DataError(f"{f} contains NaN or inf")
        items.append(Item(f, units.to_model(x), False, single))
    return items


def encode(item: Item, y: torch.Tensor, units: Normalization, image: bool) -> bytes:
    """The bytes of ``item``'s output file: ``y`` (model units) in the input's format; images
    are clipped to [-1, 1] first."""
    y = y.clamp(-1, 1) if image else y
    if item.image:
        from PIL import Image
        px = PIXELS.to_raw(y[0]).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
        buf = _bytes.BytesIO()
        Image.fromarray(np.ascontiguousarray(px.squeeze(-1) if px.shape[-1] == 1 else px)).save(
            buf, format=PIL_FORMATS.get(item.path.suffix.lower(), "PNG"))
        return buf.getvalue()
    raw = units.to_raw(y)
    arr = np.ascontiguousarray((raw[0] if item.single else raw).numpy().astype(np.float32))
    suffix = item.path.suffix.lower()
    if suffix == ".safetensors":
        from safetensors.numpy import save
        return save({"x": arr})
    buf = _bytes.BytesIO()
    if suffix == ".npz":
        np.savez(buf, x=arr)
    else:
        np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def refuse_inputs(out: Path, inputs: list) -> None:
    """``out`` is not an input, does not lie inside one and does not contain one (nor anything
    an input names)."""
    from ..io.folders import _real, _refuse_inputs
    _refuse_inputs(Path(out), _real(Path(out)), inputs)


def check_file_output(out: Path, inputs: list, overwrite: bool) -> None:
    """A file output: see :func:`rectflow.io.stage.check_files`. Touches nothing."""
    from ..io.stage import check_files
    check_files([out], inputs, overwrite)
