"""Dropout whose mask of a row depends on the row's place in the global batch.

``nn.Dropout`` draws the mask of the rows a process holds, so W processes sharing one batch
would draw other masks than one process holding all of it. :class:`RowDropout` instead draws
the mask of the whole global micro-batch (the training loop says which rows this process
holds through :func:`global_rows`, and seeds the draw the same on every process) and keeps
its own rows: a run on W processes drops exactly what a run on one drops. Outside
:func:`global_rows` (a model used alone) it is plain dropout. The price: each process draws
W times the random numbers, which is small beside the convolutions it sits between.
"""
from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar

import torch
from torch import nn

_ROWS: ContextVar[tuple[int, int] | None] = ContextVar("rectflow_global_rows", default=None)


@contextmanager
def global_rows(start: int, total: int):
    """Within this block, a batch given to a model is rows ``[start, start + n)`` of a global
    batch of ``total`` rows."""
    token = _ROWS.set((start, total))
    try:
        yield
    finally:
        _ROWS.reset(token)


class RowDropout(nn.Dropout):
    """``nn.Dropout`` (same state dict: none) that draws by global row under
    :func:`global_rows`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = _ROWS.get()
        if rows is None or not self.training or self.p == 0:
            return super().forward(x)
        start, total = rows
        u = torch.rand((total, *x.shape[1:]), device=x.device)[start:start + x.shape[0]]
        keep = (u >= self.p).to(x.dtype)
        return x * keep / (1 - self.p) if self.p < 1 else x * 0
