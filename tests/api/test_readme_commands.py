"""Every command the docs show runs: the ```bash and ```python blocks of README.md and
docs/*.md, extracted and run as subprocesses (``python -m rectflow.cli.main`` in place of
``rectflow``) in scratch folders, in order within a block, under RECTFLOW_SMOKE=1 (tiny
budgets, rectflow/smoke.py). Each must exit 0.

The extractor works on whichever file holds a block. A command shown twice runs once (its
first showing); blocks that read a path another block wrote run after it in the same folder,
other blocks run side by side. Only the commands in SKIP do not run, each with its reason."""
from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

import numpy as np

from smoke_support import ROOT, failure, run, run_all

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\s*$")
# (pattern of a command, why it is not run): keep this list short
SKIP = [
    (r"^(pip|pytest|apt-get|\.|source) |^python -m venv ", "installs, or runs the test suite"),
    (r"^(torchrun|accelerate launch) ", "a multi-process launch (tests/test_distributed.py "
                                         "runs training on 2 processes)"),
    (r"cifar10|inception_v3", "downloads CIFAR-10 or Inception weights"),
    (r"ckpts/", "ckpts/rf1, ckpts/rf2 stand for the reader's own model folders"),
]
# files the examples read as the reader's own data (2-D points)
INPUTS = {"moons.npy": 200, "points.npy": 50, "two_points.npy": 2}


def blocks(doc: Path):
    """(language, first line number, text) of each fenced block of ``doc``."""
    lang, start, lines = None, 0, []
    for i, line in enumerate(doc.read_text().splitlines(), 1):
        m = FENCE.match(line.strip())
        if m and lang is None:
            lang, start, lines = m.group(1), i, []
        elif line.strip() == "```" and lang is not None:
            yield lang, start, "\n".join(lines)
            lang = None
        elif lang is not None:
            lines.append(line)


def commands(text: str) -> list[list[str]]:
    """The commands of a shell block: continuation lines joined, comments dropped, && split."""
    out = []
    for line in text.replace("\\\n", " ").splitlines():
        cmd: list[str] = []
        for tok in shlex.split(line, comments=True) + ["&&"]:
            if tok == "&&":
                out += [cmd] if cmd else []
                cmd = []
            else:
                cmd.append(tok)
    return out


def skipped(cmd: list[str]) -> str | None:
    line = " ".join(cmd)
    return next((why for pattern, why in SKIP if re.search(pattern, line)), None)


def argv(cmd: list[str]) -> list[str]:
    return [sys.executable, "-m", "rectflow.cli.main", *cmd[1:]] if cmd[0] == "rectflow" else cmd


def paths(cmd: list[str]) -> set[str]:
    return {t.rstrip("/") for t in cmd if "/" in t and not t.startswith(("-", "http"))}


def plan():
    """Chains of steps [(where, kind, payload)], each chain in one folder; and the skips."""
    seen, chains, skips = set(), [], []   # chain: (paths it touches, [steps])
    tomls: dict[Path, str] = {}
    for doc in DOCS:
        for lang, line, text in blocks(doc):
            where = f"{doc.relative_to(ROOT)}:{line}"
            if lang == "toml":
                tomls[doc] = text
            if lang == "python" and text not in seen:
                seen.add(text)
                chains.append(({"runs"}, [(where, "python", text)]))   # the API's runs/
            if lang != "bash":
                continue
            steps, touched = [], set()
            for cmd in commands(text):
                key = " ".join(cmd)
                why = skipped(cmd)
                if why:
                    skips.append(f"{where}: {key}  ({why})")
                elif key not in seen:
                    seen.add(key)
                    steps.append((where, "toml", tomls.get(doc, "")))
                    steps.append((where, "cmd", cmd))
                    touched |= paths(cmd)
            if not steps:
                continue
            after = next((c for c in reversed(chains) if any(
                p == q or p.startswith(q + "/") or q.startswith(p + "/")
                for p in touched for q in c[0] if "/" in p and "/" in q)), None)
            if after is None:
                chains.append((touched, steps))
            else:
                after[0].update(touched)
                after[1].extend(steps)
    return [steps for _, steps in chains], skips


def prepare(work: Path, cmd: list[str], toml: str) -> None:
    """The reader's own files a command names: 2-D points, a --config TOML shown above it."""
    rng = np.random.default_rng(0)
    for name, n in INPUTS.items():
        if name in cmd and not (work / name).exists():
            np.save(work / name, rng.normal(size=(n, 2)).astype(np.float32))
    if "--config" in cmd:
        cfg = work / cmd[cmd.index("--config") + 1]
        if not cfg.exists():
            assert toml, f"no toml block above {' '.join(cmd)}"
            cfg.write_text(toml + "\n")


def test_extractor_finds_the_documented_commands():
    chains, skips = plan()
    cmds = [" ".join(p) for steps in chains for _, kind, p in steps if kind == "cmd"]
    assert any(c.startswith("rectflow run --preset moons") for c in cmds)
    assert any(c.startswith("rectflow reflow") for c in cmds)
    assert sum(kind == "python" for steps in chains for _, kind, _ in steps) >= 1
    assert len(cmds) == len(set(cmds))                    # each command runs once
    assert any("pip install" in s for s in skips) and len(skips) < 20
    print("\n".join(["skipped:", *skips]))


def test_every_documented_command_runs(tmp_path):
    chains, _ = plan()

    def job(i: int, steps):
        def go() -> list[str]:
            work = tmp_path / f"chain{i}"
            work.mkdir()
            for where, kind, payload in steps:
                if kind == "toml":
                    toml = payload
                    continue
                if kind == "python":
                    (work / "example.py").write_text(payload)
                    cmd = [sys.executable, "example.py"]
                else:
                    prepare(work, payload, toml)
                    cmd = argv(payload)
                proc = run(cmd, cwd=work, timeout=600)
                if proc.returncode != 0:
                    return [failure(f"{where}: {' '.join(map(str, cmd))}", proc)]
            return []
        return go

    jobs = {f"chain {i} ({steps[0][0]}, {sum(k != 'toml' for _, k, _ in steps)} commands)":
            job(i, steps) for i, steps in enumerate(chains)}
    failures, _ = run_all(jobs)
    assert not failures, "\n\n".join(failures)
