"""Pictures and tables of results: scatter plots of 2-D samples, image grids, trajectories,
curves against round and NFE, animated flows, and Markdown/CSV tables.

matplotlib runs on the Agg backend (no screen needed); every file is written atomically.
"""
from __future__ import annotations

import io
import math
from pathlib import Path

import torch

from ..io.files import atomic_write_bytes


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
                         reference: torch.Tensor | None = None,
                         per_row: int | None = None) -> Path | None:
    """The natural picture of model-space samples: an image grid (the first 64, or all of
    them ``per_row`` a row: one row per class) or a 2-D scatter. Data of other shapes has no
    picture (returns None)."""
    if is_image:
        from ..data.images import save_image_grid
        return save_image_grid(x[:64] if per_row is None else x, path, nrow=per_row)
    if x.dim() == 2 and x.shape[1] == 2:
        return save_scatter(x, path, title, reference)
    return None


# --------------------------------------------------------------------------- tables as text
def _cell(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def markdown_table(headers: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def csv_text(headers: list[str], rows: list[list]) -> str:
    import csv
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(headers)
    w.writerows([["" if v is None else v for v in row] for row in rows])
    return buf.getvalue()


# ------------------------------------------------------------------------- comparison plots
def save_trajectories(panels: list[tuple[str, torch.Tensor]], path: str | Path,
                      reference: torch.Tensor | None = None) -> Path:
    """2-D trajectories side by side, one panel per model: ``panels`` holds (title,
    trajectory [T, B, 2]) solved from the same noise, so the panels differ only by the flow."""
    n = len(panels)
    plt, (fig, axes) = _figure(1, n, figsize=(3.2 * n, 3.4), squeeze=False)
    lim = max(float(tr.abs().max()) for _, tr in panels) * 1.05
    for ax, (title, tr) in zip(axes[0], panels):
        z = tr.detach().cpu().numpy()
        if reference is not None:
            r = reference.detach().cpu().numpy()
            ax.scatter(r[:, 0], r[:, 1], s=1, c="0.85", linewidths=0, zorder=0)
        ax.plot(z[:, :, 0], z[:, :, 1], c="tab:blue", lw=0.5, alpha=0.35, zorder=1)
        ax.scatter(z[0, :, 0], z[0, :, 1], s=3, c="0.3", linewidths=0, zorder=2)
        ax.scatter(z[-1, :, 0], z[-1, :, 1], s=4, c="tab:orange", linewidths=0, zorder=3)
        ax.set_xlim(-lim, lim), ax.set_ylim(-lim, lim)
        ax.set_aspect("equal"), ax.set_xticks([]), ax.set_yticks([])
        ax.set_title(title, fontsize=9)
    return save_figure(fig, path, dpi=90)


def save_sample_grids(rows: list[tuple[str, dict[int, torch.Tensor]]], path: str | Path,
                      nrow: int | None = None) -> Path:
    """Image samples in a table: one row per model, one column per number of steps; each
    cell a small grid of model-space images in [-1, 1] from the same noise (``nrow`` images
    a row: one row per class for a conditional model; default about square)."""
    from torchvision.utils import make_grid
    steps = sorted({k for _, cells in rows for k in cells})
    plt, (fig, axes) = _figure(len(rows), len(steps), squeeze=False,
                               figsize=(1.9 * len(steps), 2.0 * len(rows)))
    for i, (title, cells) in enumerate(rows):
        for j, k in enumerate(steps):
            ax = axes[i][j]
            ax.set_xticks([]), ax.set_yticks([])
            if k in cells:
                x = (cells[k].detach().float().cpu().clamp(-1, 1) + 1) / 2
                g = make_grid(x, nrow=nrow or int(math.sqrt(x.shape[0])), padding=1,
                              pad_value=1.0)
                ax.imshow(g.permute(1, 2, 0).numpy().squeeze(), cmap="gray", vmin=0, vmax=1,
                          interpolation="nearest")
            if i == 0:
                ax.set_title(f"{k} step{'s' if k > 1 else ''}", fontsize=9)
            if j == 0:
                ax.set_ylabel(title, fontsize=9)
    return save_figure(fig, path, dpi=90)


def _auto_log(ax, values: list[float]) -> bool:
    """A log y-axis when the values span more than a factor of 10 (straightness falls by
    orders of magnitude across rounds; on a linear axis later rounds would all sit on 0)."""
    positive = [v for v in values if v > 0]
    if len(positive) == len(values) and positive and max(positive) / min(positive) > 10:
        ax.set_yscale("log")
        return True
    return False


def save_round_curves(labels: list[str], series: dict[str, list[float]], path: str | Path,
                      title: str = "") -> Path:
    """Path metrics against round: one subplot per metric, models in lineage order. A series
    named ``"<metric> (OT)"`` is drawn dashed on the subplot of ``<metric>``."""
    main = [k for k in series if not k.endswith(" (OT)")]
    plt, (fig, axes) = _figure(1, len(main), figsize=(3.6 * len(main), 3.0), squeeze=False)
    x = list(range(len(labels)))
    for ax, key in zip(axes[0], main):
        ax.plot(x, series[key], "o-", c="tab:blue", label=key)
        if f"{key} (OT)" in series:
            ax.plot(x, series[f"{key} (OT)"], "s--", c="tab:green", label="OT reference")
            ax.legend(fontsize=7)
        ax.set_xticks(x, labels, fontsize=8)
        ax.set_title(key, fontsize=9)
        if not _auto_log(ax, series[key] + series.get(f"{key} (OT)", [])):
            ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3, which="both")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def save_nfe_curves(curves: dict[str, tuple[list[int], list[float]]], path: str | Path,
                    metric: str, references: dict[str, tuple[int, float]] | None = None) -> Path:
    """Sample quality against NFE (log-2 axis), one curve per model; the adaptive reference
    of each model is a star at its own NFE."""
    plt, (fig, ax) = _figure(figsize=(5.0, 3.6))
    for i, (name, (nfes, vals)) in enumerate(curves.items()):
        color = f"C{i}"
        ax.plot(nfes, vals, "o-", c=color, label=name)
        if references and name in references:
            ax.plot(*references[name], "*", c=color, ms=10)
    from matplotlib.ticker import ScalarFormatter
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.set_xlabel("NFE (stars: adaptive dopri5)")
    ax.set_ylabel(metric)
    _auto_log(ax, [v for _, vals in curves.values() for v in vals])
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def save_flow_gif(panels: list[tuple[str, torch.Tensor]], path: str | Path, frames: int = 40,
                  fps: int = 12, reference: torch.Tensor | None = None,
                  callback=None) -> Path:
    """Particles moving from noise (t=0) to data (t=1) along each model's ODE, one panel per
    model, as an animated GIF (matplotlib draws the frames, PIL writes the file)."""
    from PIL import Image
    n = len(panels)
    lim = max(float(tr.abs().max()) for _, tr in panels) * 1.05
    ref = reference.detach().cpu().numpy() if reference is not None else None
    images = []
    for f in range(frames):
        t = f / (frames - 1)
        plt, (fig, axes) = _figure(1, n, figsize=(2.8 * n, 3.0), squeeze=False)
        for ax, (title, tr) in zip(axes[0], panels):
            j = round(t * (tr.shape[0] - 1))   # the grid point nearest t
            z = tr[j].detach().cpu().numpy()
            if ref is not None:
                ax.scatter(ref[:, 0], ref[:, 1], s=1, c="0.85", linewidths=0)
            ax.scatter(z[:, 0], z[:, 1], s=3, c="tab:blue", linewidths=0)
            ax.set_xlim(-lim, lim), ax.set_ylim(-lim, lim)
            ax.set_aspect("equal"), ax.set_xticks([]), ax.set_yticks([])
            ax.set_title(f"{title}  t={j / (tr.shape[0] - 1):.2f}", fontsize=8)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=70)
        plt.close(fig)
        images.append(Image.open(io.BytesIO(buf.getvalue())).convert("P", palette=Image.ADAPTIVE))
        if callback:
            callback({"event": "progress", "done": f + 1})
    out = io.BytesIO()
    images[0].save(out, format="GIF", save_all=True, append_images=images[1:],
                   duration=int(1000 / fps), loop=0)
    atomic_write_bytes(path, out.getvalue())
    return Path(path)
