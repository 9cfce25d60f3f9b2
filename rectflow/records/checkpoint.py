"""Checkpoint folders: safetensors weights + JSON, written atomically, read without pickle.

Layout of a model folder::

    config.json          model config, data spec, stage, round, parent, seed, versions
    model.safetensors    raw weights of the last saved step
    ema.safetensors      EMA weights (what sampling uses by default)
    metrics.json         evaluation after training
    metrics.jsonl        training log, one JSON object a line
    state/LATEST         name of the newest complete resume snapshot
    state/step-NNNNNNNN/ model, ema, optimizer tensors + JSON, meta.json

Every file is written to a temporary name in its folder, fsynced and renamed into place, so a
kill never leaves a half-written file under a final name. A snapshot folder is complete before
``LATEST`` names it. Each snapshot is marked (kind ``snapshot``) with the token of its run folder
and records its files, so only this run's snapshots, holding nothing else, are ever deleted;
``state`` and everything in it must be real folders and files, never links.
"""
from __future__ import annotations

import contextlib
import os
import re
import stat
from pathlib import Path

import torch

from ..errors import CheckpointError, OutputError, UserError
from ..io.folders import make_folder
from ..io.remove import (SNAPSHOT, foreign_entries, forget, is_made, register, remove_made,
                         token_of)
from . import RunCard
from .base import record_in_folder
from .snapshot import SnapshotMeta, SnapshotOptimizer
from ..io.files import (atomic_write_bytes, atomic_write_json, fsync_dir, load_tensors, read_json,
                        save_tensors, sha256_file)

__all__ = ["CONFIG", "STATE", "Checkpoint", "atomic_write_bytes", "atomic_write_json",
           "load_tensors", "read_json", "save_tensors", "sha256_file", "save_snapshot",
           "latest_snapshot", "load_snapshot", "load_weights"]

CONFIG = RunCard.FILENAME
STATE = "state"


def check_fit(path: str | Path, own: dict[str, list[int]]) -> None:
    """Refuse the safetensors file ``path`` unless its header names exactly the tensors
    ``own`` (name -> shape) with those shapes; nothing is loaded."""
    from ..io.files import tensor_shapes
    theirs = tensor_shapes(path)
    missing = sorted(set(own) - set(theirs))
    extra = sorted(set(theirs) - set(own))
    shapes = [k for k in own if k in theirs and own[k] != theirs[k]]
    if missing or extra or shapes:
        parts = []
        if missing:
            parts.append(f"missing {missing[:3]}")
        if extra:
            parts.append(f"unexpected {extra[:3]}")
        if shapes:
            k = shapes[0]
            parts.append(f"{k} has shape {theirs[k]}, config says {own[k]}")
        raise CheckpointError(f"{path} does not match its config.json: {'; '.join(parts)}")


def load_weights(model: torch.nn.Module, path: str | Path) -> None:
    """Load safetensors weights into ``model``, strictly: a mismatch (read from the file's
    header, before any tensor is loaded) is a CheckpointError."""
    from ..models import tensor_shapes
    check_fit(path, tensor_shapes(model))
    model.load_state_dict(load_tensors(path))


def check_saved(card: RunCard, folder: str | Path) -> None:
    """Bound ``card``'s model sizes and check its tensors' shapes (planned on the meta
    device, without memory) against the headers of the weights saved in ``folder``, so a
    crafted config.json is refused before anything is allocated."""
    from ..models import plan_model, tensor_shapes
    shapes = tensor_shapes(plan_model(card.model))
    for name in ("ema.safetensors", "model.safetensors"):
        path = Path(folder) / name
        if path.is_file():
            card.check_weights(path)
            check_fit(path, shapes)


def build_checked(card: RunCard, folder: str | Path) -> torch.nn.Module:
    """The network of ``card`` once :func:`check_saved` accepts it."""
    from ..models import build_model
    check_saved(card, folder)
    return build_model(card.model)


# ------------------------------------------------------------------------- resume snapshots
def _flatten_optimizer(sd: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors, plain = {}, {"param_groups": sd["param_groups"], "state": {}}
    for idx, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"{idx}.{k}"] = v
            else:
                plain["state"].setdefault(str(idx), {})[k] = v
    return tensors, plain


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], plain: dict) -> dict:
    state: dict = {}
    for name, v in tensors.items():
        idx, k = name.split(".", 1)
        state.setdefault(int(idx), {})[k] = v
    for idx, st in plain["state"].items():
        state.setdefault(int(idx), {}).update(st)
    return {"state": state, "param_groups": plain["param_groups"]}


def _state_folder(folder: Path) -> Path:
    """``folder/state``, created if missing; a link or a file there is refused."""
    root = folder / STATE
    with contextlib.suppress(FileExistsError):   # a file or link there: refused just below
        root.mkdir(exist_ok=True)
    if not stat.S_ISDIR(os.lstat(root).st_mode) or os.path.islink(folder):
        raise OutputError(f"{root} is not a real folder (a link or a file); rectflow writes "
                          "snapshots only into a state folder it made")
    return root


def check_state(folder: str | Path) -> None:
    """Before resuming ``folder``: everything in its ``state`` folder is this run's (``LATEST``
    and snapshots marked with the run's token). A run made before tokens existed is exempt."""
    root = Path(folder) / STATE
    if not os.path.lexists(root) or token_of(folder) is None:
        return
    for entry in os.scandir(root):
        ok = entry.name == "LATEST" and entry.is_file(follow_symlinks=False) or \
            entry.is_dir(follow_symlinks=False) and is_made(entry.path) and \
            not foreign_entries(entry.path)
        if not ok:
            raise UserError(f"cannot resume {folder}: {entry.path} was not made by this run; "
                            "move it away")


def save_snapshot(folder: str | Path, step: int, model: dict, ema: dict, optimizer: dict,
                  meta: dict, keep: int = 1) -> Path:
    """Write a complete resume snapshot, point ``state/LATEST`` at it, drop this run's older
    ones (never anything else found in ``state``)."""
    root = _state_folder(Path(folder))
    snap = root / f"step-{step:08d}"
    tmp = root / f".tmp-step-{step:08d}"
    remove_made(tmp)
    make_folder(tmp, SNAPSHOT, run=token_of(folder))
    save_tensors(tmp / "model.safetensors", model)
    save_tensors(tmp / "ema.safetensors", ema)
    opt_tensors, opt_plain = _flatten_optimizer(optimizer)
    save_tensors(tmp / "optimizer.safetensors", opt_tensors)
    SnapshotOptimizer(**opt_plain).write(tmp / SnapshotOptimizer.FILENAME)
    SnapshotMeta(step=step, **meta).write(tmp / SnapshotMeta.FILENAME)
    remove_made(snap)
    os.replace(tmp, snap)
    forget(tmp)
    register(snap)
    fsync_dir(root)
    atomic_write_bytes(root / "LATEST", snap.name.encode())
    old = sorted(p for p in root.glob("step-*") if p.name != snap.name and is_made(p))
    for p in old[: max(0, len(old) - (keep - 1))]:
        remove_made(p, strict=False)   # one holding a user's file is left whole
    for p in root.glob(".tmp-step-*"):
        remove_made(p, strict=False)
    return snap


def latest_snapshot(folder: str | Path) -> Path | None:
    """The snapshot ``state/LATEST`` names; only a ``step-NNNNNNNN`` folder beside it counts,
    so an edited pointer cannot send a resume outside the checkpoint."""
    pointer = Path(folder) / STATE / "LATEST"
    if not pointer.is_file():
        return None
    name = pointer.read_text(errors="replace").strip()
    if not re.fullmatch(r"step-\d{8}", name):
        raise CheckpointError(f"{pointer} names {name[:80]!r}, not a step-NNNNNNNN snapshot "
                              "of this checkpoint")
    snap = Path(folder) / STATE / name
    if not (snap / "meta.json").is_file():
        raise CheckpointError(f"{pointer} names {snap.name}, which is incomplete")
    return snap


def load_snapshot(snap: Path) -> dict:
    """The tensors and records of a snapshot; ``meta`` is its :class:`SnapshotMeta` as a
    dict. A snapshot whose optimizer tensors and JSON do not fit together is one
    CheckpointError."""
    plain = SnapshotOptimizer.read(snap / SnapshotOptimizer.FILENAME)
    tensors = load_tensors(snap / "optimizer.safetensors")
    try:
        optimizer = _unflatten_optimizer(tensors, plain.to_json())
    except (ValueError, KeyError) as e:
        raise CheckpointError(f"{snap / 'optimizer.safetensors'} does not fit "
                              f"{plain.FILENAME} ({type(e).__name__}: {e})") from None
    return {
        "model": load_tensors(snap / "model.safetensors"),
        "ema": load_tensors(snap / "ema.safetensors"),
        "optimizer": optimizer,
        "meta": SnapshotMeta.read(snap / SnapshotMeta.FILENAME).to_json(),
    }


# ---------------------------------------------------------------------- reading a checkpoint
class Checkpoint:
    """A trained model folder, read back: its run card and a way to rebuild the model."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.card = RunCard.read(record_in_folder(self.path, "model", CONFIG,
                                                  "; is it a rectflow model folder?"))

    @property
    def config(self) -> dict:
        """The card as a plain dict (read-only view)."""
        return self.card.to_json()

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.card.shape)

    @property
    def complete(self) -> bool:
        return bool(self.card.complete)

    def weights_path(self, ema: bool = True) -> Path:
        p = self.path / ("ema.safetensors" if ema else "model.safetensors")
        if not p.is_file():
            raise CheckpointError(f"{p} does not exist; did training finish a first save?")
        return p

    def objective(self):
        from ..objectives import from_card
        return from_card(self.card.objective)

    def velocity(self, ema: bool = True, device: str | torch.device = "cpu",
                 module: torch.nn.Module | None = None):
        """dx/dt of this model for every solver: ``objective.velocity(network)``."""
        return self.objective().velocity(self.load_model(ema, device, module))

    def load_model(self, ema: bool = True, device: str | torch.device = "cpu",
                   module: torch.nn.Module | None = None) -> torch.nn.Module:
        """The network with its trained weights. A model of the user's own class is not
        rebuilt from JSON: pass an instance as ``module`` and its weights are loaded into it."""
        from ..models import custom_class
        path = self.weights_path(ema)
        if module is None:
            if self.card.is_custom:
                cls = custom_class(self.card.model)
                raise CheckpointError(f"{self.path} holds weights of your own model class "
                                      f"{cls}; load it with rectflow.load(path, model={cls}(...))")
            module = build_checked(self.card, self.path)
        else:
            self.card.check_weights(path)
        load_weights(module, path)
        return module.to(device).eval()


def kind_of(*paths: str | Path) -> str | None:
    """'image' or 'vector': the kind of data of the first readable model folder among
    ``paths`` (a run folder of ``rectflow run`` is read through its rf1); None when there is
    none, and the stage that reads them says why."""
    for p in paths:
        for folder in (Path(p), Path(p) / "rf1"):
            try:
                return Checkpoint(folder).card.kind
            except (UserError, OSError, ValueError):
                continue
    return None


def lineage(ckpt_dir: str | Path) -> list[dict]:
    """The chain of checkpoints from the first round to ``ckpt_dir``, oldest first."""
    chain, path, seen = [], Path(ckpt_dir).resolve(), set()
    while path is not None and path not in seen:
        seen.add(path)
        card = Checkpoint(path).card
        chain.append({"path": str(path), "stage": card.stage, "round": card.round,
                      "objective": (card.objective or {}).get("name", "flow")})
        parent = card.parent or {}
        nxt = parent.get("init") if card.stage == "distill" else \
            parent.get("teacher") or (parent.get("init") if card.stage != "train" else None)
        path = (path / nxt).resolve() if nxt else None
    return chain[::-1]
