"""The benchmark harness (benchmarks/peers.py) runs end to end and keeps every row.

It checks the harness, not the figures: each method x target has a row, and each row holds
finite numbers or says why it has none. Passes with or without the peers installed.
"""
import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "peers.py"
NO_FIGURES = {"failed", "not installed", "skipped"}


@pytest.fixture(scope="module")
def peers():
    spec = importlib.util.spec_from_file_location("bench_peers", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod   # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def test_quick_run_has_every_row(tmp_path, peers):
    report, data = tmp_path / "RESULTS.md", tmp_path / "results.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--targets", "moons", "--steps", "2",
         "--ot-steps", "1", "--pairs", "1024", "--eval-n", "128", "--limit-steps", "2",
         "--write", str(report), "--json", str(data)],
        capture_output=True, text=True, timeout=170, cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1"})   # one thread: fastest on a busy CPU
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(data.read_text())
    rows = {(r["target"], r["key"]): r for r in result["rows"]}
    assert set(rows) == {("moons", k) for k in peers.METHODS}
    for (_, key), r in rows.items():
        if r["status"] == "ok":
            figures = [*r["w2"].values(), r["ref_w2"], r["straightness"], r["transport_cost"],
                       r["ot_cost"], r["train_samples_per_s"]]
            assert len(r["w2"]) == len(peers.NFES) and r["ref_nfe"] > 0, key
            assert all(isinstance(v, float) and math.isfinite(v) for v in figures), key
        else:
            assert r["status"] in NO_FIGURES and r["message"], key
    for key in ("rf1", "rf2", "rf3", "distill", "rf-ot"):   # rectflow needs no peer
        assert rows[("moons", key)]["status"] == "ok", rows[("moons", key)]["message"]
    assert rows[("moons", "rf2")]["pairs_per_s"] > 0
    assert all(v > 0 for v in result["limits"]["moons"].values())
    text = report.read_text()
    assert "## moons" in text and "## Goals" in text and "cores" in text
    assert all(label in text for label in peers.METHODS.values())


def test_missing_or_broken_peer_keeps_its_row(peers):
    proto = peers.Protocol(**{**peers.QUICK, "steps": 1}, targets=("moons",))
    limits = {"train_samples_per_s": 1.0, "forward_rows_per_s": 1.0}
    dataset = peers.load_dataset({"name": "moons"})

    def missing(net):
        return peers.pa._import("rectflow_no_such_peer.sub", ["Thing"])

    def broken(net):
        raise RuntimeError("the peer's API changed")

    row = peers.run_peer("icfm", missing, "moons", dataset, 1, proto, limits, {})
    assert row.status == "not installed" and "rectflow_no_such_peer" in row.message
    row = peers.run_peer("meta", broken, "moons", dataset, 1, proto, limits, {})
    assert row.status == "failed" and "API changed" in row.message
    assert not row.w2 and row.ref_w2 is None
