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

import os
import re
import stat
from pathlib import Path

import torch

from .errors import CheckpointError, OutputError, UserError
from .io.folders import make_folder
from .io.remove import (SNAPSHOT, foreign_entries, forget, is_made, register, remove_made,
                        token_of)
from .records import RunCard
from .records.files import (atomic_write_bytes, atomic_write_json, fsync_dir, load_tensors,
                            read_json, save_tensors, sha256_file)

__all__ = ["CONFIG", "STATE", "Checkpoint", "atomic_write_bytes", "atomic_write_json",
           "load_tensors", "read_json", "save_tensors", "sha256_file", "save_snapshot",
           "latest_snapshot", "load_snapshot", "load_weights"]

CONFIG = RunCard.FILENAME
STATE = "state"


def load_weights(model: torch.nn.Module, path: str | Path) -> None:
    """Load safetensors weights into ``model``, strictly: a mismatch is a CheckpointError."""
    state = load_tensors(path)
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    shapes = [k for k in own if k in state and own[k].shape != state[k].shape]
    if missing or extra or shapes:
        parts = []
        if missing:
            parts.append(f"missing {missing[:3]}")
        if extra:
            parts.append(f"unexpected {extra[:3]}")
        if shapes:
            k = shapes[0]
            parts.append(f"{k} has shape {list(state[k].shape)}, config says {list(own[k].shape)}")
        raise CheckpointError(f"{path} does not match its config.json: {'; '.join(parts)}")
    model.load_state_dict(state)


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
    try:
        root.mkdir(exist_ok=True)
    except FileExistsError:
        pass
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
    atomic_write_json(tmp / "optimizer.json", opt_plain)
    atomic_write_json(tmp / "meta.json", {**meta, "step": step})
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
    return {
        "model": load_tensors(snap / "model.safetensors"),
        "ema": load_tensors(snap / "ema.safetensors"),
        "optimizer": _unflatten_optimizer(load_tensors(snap / "optimizer.safetensors"),
                                          read_json(snap / "optimizer.json")),
        "meta": read_json(snap / "meta.json"),
    }


# ---------------------------------------------------------------------- reading a checkpoint
class Checkpoint:
    """A trained model folder, read back: its run card and a way to rebuild the model."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_dir():
            raise CheckpointError(f"checkpoint folder {self.path} does not exist")
        if not (self.path / CONFIG).is_file():
            raise CheckpointError(f"{self.path} has no {CONFIG}; is it a rectflow model folder?")
        self.card = RunCard.read(self.path / CONFIG)

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
        from .objectives import from_card
        return from_card(self.card.objective)

    def velocity(self, ema: bool = True, device: str | torch.device = "cpu",
                 module: torch.nn.Module | None = None):
        """dx/dt of this model for every solver: ``objective.velocity(network)``."""
        return self.objective().velocity(self.load_model(ema, device, module))

    def load_model(self, ema: bool = True, device: str | torch.device = "cpu",
                   module: torch.nn.Module | None = None) -> torch.nn.Module:
        """The network with its trained weights. A model of the user's own class is not
        rebuilt from JSON: pass an instance as ``module`` and its weights are loaded into it."""
        from .models import build_model, custom_class
        path = self.weights_path(ema)
        if module is None:
            if self.card.is_custom:
                cls = custom_class(self.card.model)
                raise CheckpointError(f"{self.path} holds weights of your own model class "
                                      f"{cls}; load it with rectflow.load(path, model={cls}(...))")
            module = build_model(self.card.model)
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
