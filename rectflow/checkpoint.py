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
``LATEST`` names it.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from .errors import CheckpointError

CONFIG = "config.json"
_UMASK = os.umask(0)
os.umask(_UMASK)
STATE = "state"


# ------------------------------------------------------------------------------- atomic IO
def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)   # mkstemp makes 0600; final files get the usual mode
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):   # some file systems cannot fsync a directory
            os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_json(path: str | Path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor],
                 metadata: dict[str, str] | None = None) -> str:
    """Write tensors as safetensors atomically; returns the file's sha256."""
    data = save({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, metadata=metadata)
    atomic_write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()


def load_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a safetensors file; anything else (a pickle, a truncated file) is refused."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path} is not a valid safetensors file ({e})") from None


def read_json(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist")
    try:
        obj = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path} is not valid JSON ({e})") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} should hold a JSON object")
    return obj


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


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


def save_snapshot(folder: str | Path, step: int, model: dict, ema: dict, optimizer: dict,
                  meta: dict, keep: int = 1) -> Path:
    """Write a complete resume snapshot, point ``state/LATEST`` at it, drop older ones."""
    root = Path(folder) / STATE
    snap = root / f"step-{step:08d}"
    tmp = root / f".tmp-step-{step:08d}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_tensors(tmp / "model.safetensors", model)
    save_tensors(tmp / "ema.safetensors", ema)
    opt_tensors, opt_plain = _flatten_optimizer(optimizer)
    save_tensors(tmp / "optimizer.safetensors", opt_tensors)
    atomic_write_json(tmp / "optimizer.json", opt_plain)
    atomic_write_json(tmp / "meta.json", {**meta, "step": step})
    shutil.rmtree(snap, ignore_errors=True)
    os.replace(tmp, snap)
    _fsync_dir(root)
    atomic_write_bytes(root / "LATEST", snap.name.encode())
    old = sorted(p for p in root.glob("step-*") if p.is_dir() and p.name != snap.name)
    for p in old[: max(0, len(old) - (keep - 1))]:
        shutil.rmtree(p, ignore_errors=True)
    for p in root.glob(".tmp-step-*"):
        shutil.rmtree(p, ignore_errors=True)
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
    """A trained model folder, read back: its config and a way to rebuild the model."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_dir():
            raise CheckpointError(f"checkpoint folder {self.path} does not exist")
        self.config = read_json(self.path / CONFIG)
        for key in ("model", "data", "shape"):
            if key not in self.config:
                raise CheckpointError(f"{self.path / CONFIG} has no {key!r} entry; "
                                      "is this a rectflow checkpoint?")
        if not isinstance(self.config["model"], dict) or "type" not in self.config["model"]:
            raise CheckpointError(f"{self.path / CONFIG}: 'model' must be a dict with a 'type'")

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.config["shape"])

    @property
    def complete(self) -> bool:
        return bool(self.config.get("complete"))

    def weights_path(self, ema: bool = True) -> Path:
        p = self.path / ("ema.safetensors" if ema else "model.safetensors")
        if not p.is_file():
            raise CheckpointError(f"{p} does not exist; did training finish a first save?")
        return p

    def load_model(self, ema: bool = True, device: str | torch.device = "cpu") -> torch.nn.Module:
        from .models import build_model
        model = build_model(self.config["model"])
        load_weights(model, self.weights_path(ema))
        return model.to(device).eval()
