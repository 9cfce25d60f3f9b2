"""The dataset interface every source implements.

A dataset lives in *model space*: float32 tensors of shape ``[N, *shape]``. Images are scaled
to [-1, 1]; point clouds and toy targets are used as they are. ``normalization`` records the
affine map ``x_model = (x_raw - shift) / scale`` so samples can be written back in the data's own
units.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import torch


@dataclass
class Normalization:
    shift: float | list[float] = 0.0
    scale: float | list[float] = 1.0

    def _t(self, v, like: torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(v, dtype=like.dtype, device=like.device)
        return t.reshape(-1, *([1] * (like.dim() - 2))) if t.dim() == 1 and like.dim() > 2 else t

    def to_raw(self, x: torch.Tensor) -> torch.Tensor:
        return x * self._t(self.scale, x) + self._t(self.shift, x)

    def to_model(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self._t(self.shift, x)) / self._t(self.scale, x)

    def to_json(self) -> dict:
        return {"shift": self.shift, "scale": self.scale}


class Dataset(ABC):
    """Base class. Subclasses set ``name``, ``shape`` and implement ``sample``."""

    name: str = "dataset"
    shape: tuple[int, ...] = ()
    finite: bool = False
    is_image: bool = False
    normalization: Normalization

    @abstractmethod
    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """Draw ``n`` samples in model space using only ``generator`` for randomness."""

    def to_raw(self, x: torch.Tensor) -> torch.Tensor:
        return self.normalization.to_raw(x)

    @property
    def dim(self) -> int:
        d = 1
        for s in self.shape:
            d *= s
        return d


@dataclass
class ArrayDataset(Dataset):
    """A finite dataset held in memory.

    ``data`` is either float32 already in model space, or uint8 (images) that is mapped to
    [-1, 1] on access, which keeps CIFAR-10 at 150 MB instead of 600 MB.
    """

    data: torch.Tensor
    name: str = "array"
    is_image: bool = False
    normalization: Normalization = field(default_factory=Normalization)

    def __post_init__(self):
        self.shape = tuple(self.data.shape[1:])
        self.finite = True

    def __len__(self) -> int:
        return self.data.shape[0]

    def take(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.data[idx]
        if x.dtype == torch.uint8:
            x = x.float() / 127.5 - 1.0
        return x.float()

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        idx = torch.randint(len(self), (n,), generator=generator)
        return self.take(idx)
