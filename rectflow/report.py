"""Pictures and tables of results: scatter plots of 2-D samples, image grids, JSON/CSV/Markdown.

matplotlib runs on the Agg backend (no screen needed); every file is written atomically.
"""
from __future__ import annotations

import io
from pathlib import Path

import torch

from .checkpoint import atomic_write_bytes


def _figure(*args, **kwargs):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt, plt.subplots(*args, **kwargs)


def save_figure(fig, path: str | Path, dpi: int = 110) -> Path:
    import matplotlib.pyplot as plt
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


def save_scatter(points: torch.Tensor, path: str | Path, title: str = "",
                 reference: torch.Tensor | None = None) -> Path:
    """Scatter of 2-D samples, optionally over reference data in grey."""
    plt, (fig, ax) = _figure(figsize=(4.2, 4.2))
    if reference is not None:
        r = reference.detach().cpu().numpy()
        ax.scatter(r[:, 0], r[:, 1], s=2, c="0.75", alpha=0.6, label="data", linewidths=0)
    p = points.detach().cpu().numpy()
    ax.scatter(p[:, 0], p[:, 1], s=2, c="tab:blue", alpha=0.7, label="samples", linewidths=0)
    ax.set_aspect("equal")
    ax.set_title(title, fontsize=9)
    if reference is not None:
        ax.legend(loc="upper right", fontsize=7, markerscale=4)
    return save_figure(fig, path)


def save_samples_picture(x: torch.Tensor, path: str | Path, is_image: bool, title: str = "",
                         reference: torch.Tensor | None = None) -> Path | None:
    """The natural picture of model-space samples: an image grid or a 2-D scatter.
    Data of other shapes has no picture (returns None)."""
    if is_image:
        from .data.images import save_image_grid
        return save_image_grid(x[:64], path)
    if x.dim() == 2 and x.shape[1] == 2:
        return save_scatter(x, path, title, reference)
    return None
