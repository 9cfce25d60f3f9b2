"""Coupling datasets on disk: ``manifest.json`` + safetensors shards of (x0, x1, index).

Layout::

    plan.json                 the arguments that define the dataset (checked on resume)
    pairs-00000.safetensors   x0 [K, ...], x1 [K, ...], index [K] (int64)
    pairs-00000.json          the shard's sha256, range and metric sums (written after it)
    manifest.json             provenance, shard list with sha256, metrics; written last

Readers never trust a path from a manifest: shard names must be plain file names inside the
folder, and every shard's sha256 is checked when it is read.
"""
from __future__ import annotations

import hashlib
import math
import os
import stat
from pathlib import Path

import torch
from safetensors.torch import load as load_bytes

from ..errors import CheckpointError
from ..records import PairsManifest, PairsPlan
from ..records.base import record_in_folder
from ..io.files import sha256_file
from ..core.seeding import generator

MANIFEST = PairsManifest.FILENAME
PLAN = PairsPlan.FILENAME


class PairsDataset:
    """A finished coupling dataset, read shard by shard."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        hint = " (an unfinished `rectflow couple` run: rerun it to finish)" \
            if (self.path / PLAN).is_file() else ""
        self.manifest = m = PairsManifest.read(record_in_folder(self.path, "pairs", MANIFEST,
                                                                hint))
        self.shape = tuple(m.shape)
        self.n = m.n
        self.labelled = m.classes is not None   # shards also hold labels y (conditional)
        self.shards = [{"file": sh.file, "start": sh.start, "count": sh.count,
                        "sha256": sh.sha256} for sh in m.shards]
        for s in self.shards:   # regular files inside the folder, never a link out of it
            p = self.path / s["file"]
            try:
                mode = os.lstat(p).st_mode
            except FileNotFoundError:
                raise CheckpointError(f"shard {p} is missing") from None
            if not stat.S_ISREG(mode):
                raise CheckpointError(f"shard {p} is not a regular file (a link or a folder); "
                                      "pairs folders hold their shards themselves")

    def __len__(self) -> int:
        return self.n

    @property
    def dim(self) -> int:
        return math.prod(self.shape)

    def read_shard(self, i: int) -> dict[str, torch.Tensor]:
        s = self.shards[i]
        data = (self.path / s["file"]).read_bytes()
        if hashlib.sha256(data).hexdigest() != s["sha256"]:
            raise self._checksum_failed(s)
        try:
            t = load_bytes(data)
        except Exception as e:  # noqa: BLE001 - a checksum-valid but unreadable shard
            raise CheckpointError(f"shard {self.path / s['file']} is unreadable ({e})") from None
        want = {"x0", "x1", "index"} | ({"y"} if self.labelled else set())
        if set(t) != want:
            raise CheckpointError(f"shard {s['file']} holds {sorted(t)}, not "
                                  f"{', '.join(sorted(want))}")
        if self.labelled and tuple(t["y"].shape) != (s["count"],):
            raise CheckpointError(f"shard {s['file']} holds labels of shape "
                                  f"{list(t['y'].shape)}, not [{s['count']}]")
        self._check_shape(s, tuple(t["x0"].shape), tuple(t["x1"].shape))
        lo, hi = s["start"], s["start"] + s["count"]
        if not torch.equal(t["index"], torch.arange(lo, hi)):
            raise CheckpointError(f"shard {s['file']} does not hold indices {lo}..{hi - 1} "
                                  "as its manifest entry says")
        return t

    def _checksum_failed(self, s: dict) -> CheckpointError:
        return CheckpointError(f"shard {self.path / s['file']} fails its sha256 checksum "
                               "(corrupted or changed since it was written)")

    def verify(self) -> None:
        """Check every shard now, without loading its tensors: the checksum, and a safetensors
        header holding x0/x1 of the manifest's shape (reflow and distill call this before they
        touch --out)."""
        from safetensors import safe_open
        for s in self.shards:
            path = self.path / s["file"]
            if sha256_file(path) != s["sha256"]:
                raise self._checksum_failed(s)
            try:
                with safe_open(str(path), "pt") as f:
                    shapes = [tuple(f.get_slice(k).get_shape()) for k in ("x0", "x1")]
            except Exception as e:  # noqa: BLE001 - any parse failure is a bad file
                raise CheckpointError(f"shard {path} is not a valid pairs safetensors file "
                                      f"({e})") from None
            self._check_shape(s, shapes[0], shapes[1])

    def _check_shape(self, s: dict, x0: tuple, x1: tuple) -> None:
        if tuple(x0[1:]) != self.shape or tuple(x0) != tuple(x1):
            raise CheckpointError(f"shard {self.path / s['file']} holds shape {list(x0)}, "
                                  f"manifest says {list(self.shape)}")

    def head(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The first ``n`` pairs by index (for evaluation subsamples)."""
        x0s, x1s, have = [], [], 0
        for i in range(len(self.shards)):
            if have >= n:
                break
            t = self.read_shard(i)
            x0s.append(t["x0"][: n - have])
            x1s.append(t["x1"][: n - have])
            have += x0s[-1].shape[0]
        return torch.cat(x0s), torch.cat(x1s)


class StoredPairs:
    """Pairs streamed from a :class:`PairsDataset` for training, shuffled across and within
    shards: each epoch visits the shards in a seeded order, ``window`` shards at a time, and
    shuffles the pairs inside each window. Memory is ``window`` shards, whatever the size of
    the dataset. Batch ``i`` is addressed by position, so resuming needs no saved state.

    ``drop`` > 0 leaves out the share ``drop`` of pairs whose endpoints are farthest apart
    (||x1 - x0||, Re-MeanFlow's filter): the distances of all pairs are collected once,
    streaming over the shards, and cut once (:func:`~rectflow.objectives.meanflow.keep_mask`,
    ties by index), so exactly ``floor(drop * n)`` pairs are dropped whatever the seed, the
    window or the number of processes. :attr:`filter` records the cut."""

    def __init__(self, pairs: PairsDataset, seed: int, window: int = 4, drop: float = 0.0):
        self.pairs, self.seed, self.window = pairs, seed, max(1, window)
        self.shape = pairs.shape
        self.keep: list[torch.Tensor] | None = None
        self.filter: dict | None = None
        if drop > 0:
            self._cut(drop)
        self.counts = ([int(s["count"]) for s in pairs.shards] if self.keep is None else
                       [int(k.sum()) for k in self.keep])
        self.n = sum(self.counts)
        self.keys = ("x0", "x1", "y") if pairs.labelled else ("x0", "x1")
        self._key = None
        self._cache: tuple[torch.Tensor, torch.Tensor] | None = None

    def _cut(self, drop: float) -> None:
        from ..objectives.meanflow import keep_mask, pair_distances
        dist = torch.cat([pair_distances(t["x0"], t["x1"])
                          for t in map(self.pairs.read_shard, range(len(self.pairs.shards)))])
        keep = keep_mask(dist, drop)
        sizes = [int(s["count"]) for s in self.pairs.shards]
        self.keep = list(keep.split(sizes))
        dropped = dist[~keep]
        self.filter = {"drop": drop, "dropped": int(dropped.numel()), "kept": int(keep.sum()),
                       "threshold": float(dropped.min()) if dropped.numel() else None,
                       "max_kept": float(dist[keep].max())}

    def _epoch_windows(self, epoch: int) -> list[list[int]]:
        order = torch.randperm(len(self.counts), generator=generator(self.seed, "shards", epoch))
        order = order.tolist()
        return [order[i:i + self.window] for i in range(0, len(order), self.window)]

    def _read(self, i: int) -> tuple[torch.Tensor, ...]:
        """Shard ``i``'s columns (x0, x1 and, when labelled, y), filtered when ``drop``."""
        t = self.pairs.read_shard(i)
        if self.keep is None:
            return tuple(t[k] for k in self.keys)
        return tuple(t[k][self.keep[i]] for k in self.keys)

    def _load_window(self, epoch: int, w: int, shards: list[int]):
        if self._key != (epoch, w):
            parts = [self._read(i) for i in shards]
            cols = [torch.cat([p[k] for p in parts]) for k in range(len(self.keys))]
            perm = torch.randperm(cols[0].shape[0],
                                  generator=generator(self.seed, "window", epoch, w))
            self._cache, self._key = tuple(c[perm] for c in cols), (epoch, w)
        return self._cache

    def batch(self, index: int, size: int):
        pos, end = index * size, (index + 1) * size
        cols: list[list[torch.Tensor]] = [[] for _ in self.keys]
        while pos < end:
            epoch, off = divmod(pos, self.n)
            for w, shards in enumerate(self._epoch_windows(epoch)):
                wsize = sum(self.counts[i] for i in shards)
                if off < wsize:
                    break
                off -= wsize
            window = self._load_window(epoch, w, shards)
            take = min(wsize - off, end - pos)
            for c, col in zip(cols, window):
                c.append(col[off:off + take])
            pos += take
        x0, x1, *y = (torch.cat(c) for c in cols)
        return (x0, x1, {"y": y[0]}) if y else (x0, x1)
