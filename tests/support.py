"""Helpers shared by the reliability tests (distributed, crash, bad input, security).

Small, fast fixtures: a 2-D point cloud, a tiny MLP checkpoint and a few-thousand-pair coupling
dataset, plus the checks every reliability test repeats (no torn files, a tree left untouched,
a training log without a step twice) and the commands that run the CLI in a subprocess.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import os
import sys
from pathlib import Path

import numpy as np

from rectflow.stages import train as stages
from rectflow.io.files import load_tensors
from rectflow.stages.couple import CoupleConfig
from rectflow.training.loop import TrainConfig

TINY_MODEL = {"hidden": 32, "depth": 2}


def point_cloud(path: Path, n: int = 200, dim: int = 2, seed: int = 0) -> Path:
    """Two well separated blobs: a target a tiny flow learns in a few dozen steps."""
    rng = np.random.default_rng(seed)
    half = n // 2
    x = np.concatenate([rng.normal(-2, 0.3, (half, dim)), rng.normal(2, 0.3, (n - half, dim))])
    np.save(path, x.astype(np.float32))
    return path


def tiny_checkpoint(out: Path, data: Path, steps: int = 20) -> Path:
    cfg = TrainConfig(train_steps=steps, batch_size=64, lr=1e-2, warmup=0, save_every=steps,
                      log_every=5)
    return stages.train(out, str(data), model=TINY_MODEL, options=cfg, evaluate=False).path


def small_pairs(teacher: Path, out: Path, n: int = 1024, shard_size: int = 256) -> Path:
    stages.couple(teacher, out, CoupleConfig(n=n, solver="euler", steps=4, batch_size=256,
                                             shard_size=shard_size))
    return out


def flags(**kw) -> list[str]:
    """Training options as CLI flags."""
    return [a for k, v in kw.items()
            for a in (f"--{k.replace('_', '-')}", str(v))]


def edit_json(path: Path, **changes) -> None:
    """Rewrite keys of a JSON file in place; ``a__0__b=v`` sets ``obj["a"][0]["b"] = v``."""
    obj = json.loads(path.read_text())
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        node = obj
        for p in parents:
            node = node[int(p)] if isinstance(node, list) else node[p]
        node[int(last) if isinstance(node, list) else last] = value
    path.write_text(json.dumps(obj))


def subprocess_env() -> dict:
    """The test's environment minus any launcher variables, one thread per process."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")}
    env["OMP_NUM_THREADS"] = "1"
    env["COLUMNS"] = "200"   # progress bars wide enough to show their counts whole
    return env


def cli_cmd(*argv) -> list[str]:
    return [sys.executable, "-m", "rectflow.cli.main", *map(str, argv)]


def torchrun_cmd(*argv, nproc: int = 2) -> list[str]:
    """``torchrun --standalone`` picks a free port itself, so parallel runs cannot collide."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
            str(nproc), "-m", "rectflow.cli.main", *map(str, argv)]


def log_records(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()
            if line.strip()]


def assert_log_continuous(folder: Path) -> list[int]:
    """Every logged step once, in increasing order; returns the steps."""
    steps = [r["step"] for r in log_records(folder)]
    assert steps and all(a < b for a, b in zip(steps, steps[1:])), steps
    return steps


def assert_no_torn_files(root: Path) -> int:
    """Every file under a final name is whole: each ``*.safetensors`` loads and each ``*.json``
    parses. Temporary files (dot names) are the only ones allowed to be partial. Returns the
    number of files checked."""
    checked = 0
    for p in sorted(root.rglob("*")):
        if not p.is_file() or p.name.startswith("."):
            continue
        if p.suffix == ".safetensors":
            load_tensors(p)
        elif p.suffix == ".json":
            json.loads(p.read_text())
        else:
            continue
        checked += 1
    return checked


def tree_state(root: Path) -> dict[str, tuple]:
    """Bytes and mtime of every file under ``root`` (and every folder), to prove a refused
    command touched nothing."""
    state = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.is_dir():
            state[rel] = ("dir",)
        else:
            st = p.stat()
            state[rel] = (hashlib.sha256(p.read_bytes()).hexdigest(), st.st_mtime_ns, st.st_mode)
    return state


def max_weight_diff(a: Path, b: Path) -> float:
    """Largest absolute difference between two safetensors files with the same keys."""
    ta, tb = load_tensors(a), load_tensors(b)
    assert ta.keys() == tb.keys()
    return max(float((ta[k].double() - tb[k].double()).abs().max()) for k in ta)


def variant(src: Path, dst: Path) -> Path:
    """A copy of the input folder ``src`` at ``dst``, to be edited into a hostile case."""
    shutil.copytree(src, dst)
    return dst


def refused(cli, root, monkeypatch, argv, word, env=None):
    """Run the CLI in ``root``: exit 2, one line on stderr naming ``word``, no traceback, and
    every file under ``root`` as it was. Returns the line."""
    monkeypatch.chdir(root)
    for k, v in (env or {}).items():
        monkeypatch.setenv(k, v)
    before = tree_state(root)
    code, _, err = cli(*argv)
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("rectflow: error:"), lines[0]
    assert word.lower() in lines[0].lower(), lines[0]
    assert tree_state(root) == before
    return lines[0]
