"""Arrays from user files: ``.npy``, ``.npz`` or ``.safetensors`` holding one array: a point
cloud [N, D], or images [N, C, H, W] (C = 1 or 3, H = W; [N, H, W] is grey).

Files are read with ``allow_pickle=False`` / safetensors only: a pickled array is refused.
Each dimension of a point cloud is standardised for training to zero mean and standard
deviation :data:`POINT_STD` (3), the spread of the built-in 2-D targets the vector recipe was
tuned on (checkerboard 2.31, 8gaussians 2.87 per axis): at unit variance a file of checkerboard
draws trained to W2 0.42 where the built-in target reached 0.27 at the same 800 steps
(benchmarks/FILES.md). The constants are kept in the dataset's normalization so samples come
back in the file's own units, and the std in the data spec, so a spec written before it (unit
variance) still rebuilds the data its run was trained on.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from .base import ArrayDataset, Normalization

POINT_SUFFIXES = (".npy", ".npz", ".safetensors")
_PREFERRED_KEYS = ("x", "data", "x1", "points")
POINT_STD = 3.0   # per-dimension std of a point cloud in model space (see the module docstring)


def _pick(arrays: dict, path: Path) -> np.ndarray:
    for k in _PREFERRED_KEYS:
        if k in arrays:
            return arrays[k]
    if len(arrays) == 1:
        return next(iter(arrays.values()))
    raise DataError(f"{path} holds arrays {sorted(arrays)}; name one of them 'x' or 'data'")


def read_array(path: str | Path) -> np.ndarray:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"point cloud file {path} does not exist")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            arr = np.load(path, allow_pickle=False)
            if not isinstance(arr, np.ndarray):   # numpy opens a zip archive whatever its name
                arr.close()
                raise DataError(f"{path} is a zip archive, not a .npy array")
        elif suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                arr = _pick({k: z[k] for k in z.files}, path)
        elif suffix == ".safetensors":
            from safetensors.numpy import load_file
            arr = _pick(load_file(str(path)), path)
        else:
            raise DataError(f"{path}: unknown point cloud format; use one of {POINT_SUFFIXES}")
    except DataError:
        raise
    except ValueError as e:  # numpy refuses pickled object arrays with a ValueError
        raise DataError(f"{path} could not be read as a plain array ({e})") from None
    except Exception as e:  # noqa: BLE001 - any parse failure is the user's file
        raise DataError(f"{path} could not be read: {type(e).__name__}: {e}") from None
    return arr


def load_point_cloud(path: str | Path, std: float = 1.0) -> ArrayDataset:
    """A point cloud standardised to zero mean and ``std`` per dimension (images: see
    :func:`load_image_array`)."""
    arr = read_array(path)
    if is_image_array(arr.shape):
        return load_image_array(path)
    if arr.ndim != 2 or arr.shape[0] < 2 or arr.shape[1] < 1:
        raise DataError(f"{path}: expected an array of shape [N, D] with N >= 2, got {list(arr.shape)}")
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise DataError(f"{path}: expected real numbers, got dtype {arr.dtype}")
    with np.errstate(over="ignore", invalid="ignore"):   # overflow is reported just below
        x = torch.from_numpy(np.asarray(arr, dtype=np.float32).copy())
    bad = ~torch.isfinite(x)
    if bad.any():
        row = int(bad.any(1).nonzero()[0])
        raise DataError(f"{path}: row {row} contains NaN or inf (or a value too large for "
                        "float32); clean the data first")
    mean = x.mean(0)
    scale = x.std(0).clamp_min(1e-8) / std
    norm = Normalization(shift=mean.tolist(), scale=scale.tolist())
    return ArrayDataset(norm.to_model(x), name="file", normalization=norm)


def is_image_array(shape) -> bool:
    """[N, C, H, W] with C in (1, 3), or [N, H, W]: images (point clouds are [N, D])."""
    return len(shape) == 3 or (len(shape) == 4 and shape[1] in (1, 3))


def array_shape(path: str | Path) -> tuple[int, ...]:
    """The shape of the array a file holds (a ``.npy`` is only memory-mapped)."""
    path = Path(path)
    if path.suffix.lower() == ".npy" and path.is_file():
        try:
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
            if isinstance(arr, np.ndarray):
                return tuple(arr.shape)
        except (ValueError, OSError):
            pass   # read_array gives the message
    return tuple(read_array(path).shape)


def _image_scale(lo: float, hi: float, whole: bool) -> Normalization:
    """The affine map of an array's value range onto [-1, 1]: [0, 1] and [-1, 1] as such,
    whole numbers in 0..255 as 8-bit pixels, anything else by its own min and max."""
    if lo >= -1 and hi <= 1:
        return Normalization(0.5, 0.5) if lo >= 0 else Normalization(0.0, 1.0)
    if whole and lo >= 0 and hi <= 255:
        return Normalization(127.5, 127.5)
    return Normalization((hi + lo) / 2, max((hi - lo) / 2, 1e-8))


def load_image_array(path: str | Path) -> ArrayDataset:
    """Images [N, C, H, W] (or grey [N, H, W]) from a file; uint8 stays 8-bit pixels, other
    numbers are mapped onto [-1, 1] by :func:`_image_scale` (kept as the normalization)."""
    arr = read_array(path)
    if arr.ndim == 3:
        arr = arr[:, None]
    n, c, h, w = arr.shape
    if n < 2 or h != w or h < 2:
        raise DataError(f"{path}: expected square images [N, C, H, W] with N >= 2, got "
                        f"{list(arr.shape)}")
    if arr.dtype == np.uint8:
        return ArrayDataset(torch.from_numpy(np.ascontiguousarray(arr)), name="file",
                            is_image=True, normalization=Normalization(127.5, 127.5))
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise DataError(f"{path}: expected real numbers, got dtype {arr.dtype}")
    x = torch.from_numpy(np.asarray(arr, dtype=np.float32).copy())
    if not torch.isfinite(x).all():
        raise DataError(f"{path}: contains NaN or inf; clean the data first")
    norm = _image_scale(float(x.min()), float(x.max()), bool((x == x.round()).all()))
    return ArrayDataset(norm.to_model(x), name="file", is_image=True, normalization=norm)
