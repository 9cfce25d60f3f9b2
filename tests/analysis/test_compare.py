"""`rectflow compare` and `animate`: same noise for every round, tables, and real pictures."""
import csv
import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from rectflow.analysis import figures as report
from rectflow.stages import train as stages
from rectflow.analysis.compare import compare, find_checkpoints
from rectflow.errors import UserError
from rectflow.analysis.evaluate import EvalConfig
from rectflow.stages.couple import CoupleConfig
from rectflow.training.loop import TrainConfig

FAST = EvalConfig(steps=(1, 2, 4), n=256, path_steps=16, reference_rtol=1e-3, reference_atol=1e-3)


def small(steps):
    return TrainConfig(train_steps=steps, batch_size=256, log_every=steps)


@pytest.fixture(scope="module")
def rounds(tmp_path_factory):
    d = tmp_path_factory.mktemp("rounds")
    stages.train(d / "rf1", "moons", options=small(60), evaluate=False)
    stages.couple(d / "rf1", d / "pairs1", CoupleConfig(n=1024, steps=8, shard_size=1024))
    stages.reflow(d / "pairs1", d / "rf2", options=small(30), evaluate=False)
    return d


def assert_picture(path, kind="PNG"):
    im = Image.open(path)
    assert im.format == kind
    arr = np.asarray(im.convert("RGB"), dtype=float)
    assert arr.shape[0] > 50 and arr.shape[1] > 50 and arr.var() > 10   # not blank
    return im


def test_compare_writes_tables_and_pictures(rounds, tmp_path):
    out = tmp_path / "cmp"
    result = compare([rounds / "rf2", rounds / "rf1"], out, FAST)
    assert [r["name"] for r in result.rows] == ["rf1", "rf2"]        # ordered by round
    assert [r["lineage"] for r in result.rows] == [["rf1"], ["rf1", "rf2"]]
    saved = json.loads((out / "compare.json").read_text())
    assert saved["rows"] == result.rows and saved["primary_metric"] == "w2"
    rows = list(csv.DictReader(io.StringIO((out / "compare.csv").read_text())))
    assert [r["model"] for r in rows] == ["rf1", "rf2"] and float(rows[0]["w2_steps1"]) > 0
    md = (out / "compare.md").read_text().splitlines()
    table_lines = [line for line in md if line.startswith("|")]
    assert md[0].startswith("| model") and len(table_lines) == 5   # two models and the floor
    # n=256 points in 2-D: the W2 floor is flagged, and the note says why
    assert table_lines[-1].startswith("| noise floor") and " ! |" in table_lines[-1]
    assert md[-1].startswith("! W2 floor from 256 points, fewer than the 500 it needs")
    for name in ("trajectories.png", "straightness.png", "quality.png"):
        assert_picture(out / name)
    # both checkpoints got a report with the same noise/reference arguments, and its weights
    reports = [json.loads((out / "evals" / f"{r}.json").read_text()) for r in ("rf1", "rf2")]
    assert reports[0]["args"] == reports[1]["args"]
    assert reports[0]["weights_sha256"] != reports[1]["weights_sha256"]
    again = compare([rounds / "rf1", rounds / "rf2"], out, FAST, overwrite=True)
    assert all(r["cached"] for r in again.rows)
    # a forged report (numbers changed, checksum of other weights) is recomputed, not trusted
    forged = json.loads((out / "evals" / "rf2.json").read_text())
    forged["quality"]["1"]["w2"] = 1e-9
    forged["weights_sha256"] = "0" * 64
    (out / "evals" / "rf2.json").write_text(json.dumps(forged))
    third = compare([rounds / "rf1", rounds / "rf2"], out, FAST, overwrite=True)
    assert not third.rows[1]["cached"] and third.rows[1]["quality"]["1"]["w2"] > 1e-3


def test_cli_compare_and_animate(cli, rounds, tmp_path):
    code, stdout, err = cli("compare", "--ckpt", rounds / "rf1", "--ckpt", rounds / "rf2",
                            "--out", tmp_path / "c",
                            "--steps", "1,2,4", "--n", "256", "--path-steps", "16",
                            "--rtol", "1e-3", "--atol", "1e-3")
    assert code == 0, err
    assert "rf2" in stdout and "straightness" in stdout and "W2 @4" in stdout
    gif = tmp_path / "flow.gif"
    code, stdout, err = cli("animate", "--ckpt", rounds / "rf1", "--ckpt", rounds / "rf2",
                            "--out", gif, "--n", "100", "--steps", "10", "--frames", "6")
    assert code == 0, err
    im = assert_picture(gif, "GIF")
    assert im.n_frames == 6
    im.seek(0)
    first = np.asarray(im.convert("RGB"), dtype=float)
    im.seek(5)
    assert np.abs(np.asarray(im.convert("RGB"), dtype=float) - first).mean() > 0.1  # it moves


def test_compare_refuses_bad_inputs(cli, rounds, tmp_path):
    stages.train(tmp_path / "g", "8gaussians", options=small(5), evaluate=False)
    with pytest.raises(UserError, match="one dataset"):
        find_checkpoints([rounds / "rf1", tmp_path / "g"])
    with pytest.raises(UserError, match="not a model checkpoint|holds no checkpoint"):
        find_checkpoints([rounds / "pairs1"])
    code, _, err = cli("compare", "--ckpt", tmp_path / "missing")
    assert code == 2 and len(err.strip().splitlines()) == 1
    code, _, err = cli("animate", "--ckpt", rounds / "rf1", "--out", tmp_path / "x.mp4")
    assert code == 2 and ".gif" in err


def test_sample_grid_picture_for_images(tmp_path):
    g = torch.Generator().manual_seed(0)
    cells = [(name, {k: torch.rand(16, 1, 8, 8, generator=g) * 2 - 1 for k in (1, 2, 4, 8)})
             for name in ("rf1", "rf2")]
    assert_picture(report.save_sample_grids(cells, tmp_path / "grid.png"))


def test_compare_progress_only_moves_forward(rounds, tmp_path):
    """The bar of compare counts what each evaluation counts (every seed's step counts), so it
    never jumps back between models and reaches its total only when the pictures are done."""
    events = []
    compare([rounds / "rf1", rounds / "rf2"], tmp_path / "cmp", FAST.replace(seeds=2),
            callback=events.append)
    start = next(e for e in events if e["event"] == "start")
    done = [e["done"] for e in events if e["event"] == "progress"]
    assert done == sorted(done) and done[-1] == start["total"]
    assert done.count(start["total"]) == 1   # 100 % once, at the very end
