"""Images with the defaults: the CLI says what it chose, the whole pipeline runs on a folder
of PNGs, evaluation can be interrupted, and threads follow one policy."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image


def _folder(path, n=24, res=8):
    path.mkdir()
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:res, 0:res]
    for i in range(n):
        cx, cy = rng.uniform(2, res - 2, 2)
        px = (((xx - cx) ** 2 + (yy - cy) ** 2 < 4) * 200 + 30).astype(np.uint8)
        Image.fromarray(px).save(path / f"{i:02d}.png")
    return path


def test_train_on_a_folder_says_what_it_chose(cli, tmp_path):
    pics = _folder(tmp_path / "pics")
    code, out, err = cli("train", "--data", pics, "--out", tmp_path / "rf1", "--train-steps",
                         "3", "--no-eval", "--threads", "1")
    assert code == 0, err
    text = " ".join(out.split())   # notes go to stdout; stderr keeps bars and errors
    assert "threads: 1 (given" in text
    assert "image defaults for 8x8x1" in text and "per sample" in text
    card = json.loads((tmp_path / "rf1" / "config.json").read_text())
    assert card["data"]["resolution"] == 8 and card["data"]["channels"] == 1
    assert card["train"]["batch_size"] == 128 and card["model"]["width"] == 32


def test_ctrl_c_in_the_evaluation_keeps_the_model(tmp_path, monkeypatch):
    from rectflow.stages import train as stages

    def interrupted(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(stages, "evaluate_stage", interrupted)
    events = []
    ck = stages.train(tmp_path / "rf1", "moons", options={"train_steps": 3}, callback=events.append)
    assert ck.complete and not (ck.path / "eval.json").exists()
    notes = [e["text"] for e in events if e.get("event") == "note"]
    assert any("evaluation interrupted" in t and "kept" in t for t in notes)


def test_the_image_pipeline_runs_on_a_png_folder_with_default_options(tmp_path):
    from rectflow.stages import run as pipeline
    pics = _folder(tmp_path / "pics")
    sizes = {"data": str(pics), "train": {"train_steps": 4}, "couple": {"n": 48, "eval_chunk": 16},
             "reflow": {"train_steps": 2}, "distill": {"train_steps": 2},
             "compare": {"n": 16, "steps": [1, 2], "path_steps": 4}}
    record = pipeline.run("digits", tmp_path / "run", overrides=sizes)
    resolved = json.loads((tmp_path / "run" / "resolved.json").read_text())["config"]
    assert resolved["train"]["batch_size"] == 128 == resolved["reflow"]["batch_size"]
    # the image recipe reaches every stage (benchmarks/IMAGE_ABLATION.md): width 32 at 8 px,
    # reflow at lr 1e-3, distillation at its stage's 3e-4
    assert (resolved["reflow"]["lr"], resolved["distill"]["lr"]) == (1e-3, 3e-4)
    for stage in ("rf1", "rf2", "distill"):
        card = json.loads((tmp_path / "run" / stage / "config.json").read_text())
        assert card["model"]["width"] == 32, stage
    assert record["compare"].data["name"] == "imagefolder"
    assert set(record["stages"]) >= {"rf1", "rf2", "rf3", "distill", "compare"}
    samples = tmp_path / "run" / "compare" / "samples.png"
    assert samples.is_file() and Image.open(samples).size[1] > 4 * 8   # a row per round


def test_threads_are_set_when_asked_not_at_import():
    code = """
import torch
before = torch.get_num_threads()
import rectflow, rectflow.stages, rectflow.machine.threads as th
assert torch.get_num_threads() == before, "import changed the threads"
line = th.configure(1)
from threadpoolctl import threadpool_info
assert torch.get_num_threads() == 1 and th.configured() == 1
assert all(p["num_threads"] == 1 for p in threadpool_info()), threadpool_info()
print(line)
"""
    env = {"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "2"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, cwd=str(__import__("pathlib").Path(__file__).parents[2]))
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("threads: 1 (given")


def test_default_threads_follow_omp_then_cores(monkeypatch):
    from rectflow.machine import threads
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads.default_threads() == (3, "OMP_NUM_THREADS")
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (0.2, 0.0, 0.0))
    assert threads.default_threads()[0] == threads.machine_cores()
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (999.0, 0.0, 0.0))
    # not the load: the same command computes with the same threads whatever else runs
    assert threads.default_threads() == (threads.machine_cores(),
                                         f"{threads.machine_cores()} cores")
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    n, why = threads.default_threads()
    assert n == max(1, threads.machine_cores() // 2) and "2 processes" in why
    with pytest.raises(Exception, match="threads"):
        threads.configure(0)
    assert torch.get_num_threads() >= 1


@pytest.mark.parametrize("kind", ["uint8", "float01", "digits"])
def test_samples_are_saved_in_the_datas_own_dtype_and_range(cli, tmp_path, kind):
    """8-bit data give 8-bit samples; float images stay float in their own range (digits:
    0..16, a [0, 1] array: 0..1), never rescaled to 0..255."""
    rng = np.random.default_rng(0)
    if kind == "digits":
        data, hi, dtype = "digits", 16.0, np.float32
    else:
        arr = rng.integers(0, 256, (24, 1, 6, 6)).astype(np.uint8)
        if kind == "float01":
            arr = arr.astype(np.float32) / 255.0
        data = tmp_path / "imgs.npy"
        np.save(data, arr)
        hi, dtype = (255, np.uint8) if kind == "uint8" else (1.0, np.float32)
    code, _, err = cli("train", "--data", data, "--out", tmp_path / "rf1", "--train-steps", "2",
                       "--no-eval", "--threads", "1")
    assert code == 0, err
    code, _, err = cli("sample", "--ckpt", tmp_path / "rf1", "-n", "64", "--steps", "1",
                       "--out", tmp_path / "s.npy")
    assert code == 0, err
    x = np.load(tmp_path / "s.npy")
    assert x.dtype == dtype and x.min() >= 0 and x.max() <= hi
    assert x.max() > 0.5 * hi   # the data's range, not a rescaled one


def test_couple_and_eval_of_an_image_model_use_the_image_recipe(cli, tmp_path, monkeypatch):
    """No flag needed: an image model is coupled and evaluated with the image defaults
    (options.KIND_DEFAULTS["image"]); a 2-D model keeps the plain defaults."""
    from rectflow.stages import train as stages
    from rectflow.analysis import evaluate as evaluation
    from rectflow.options import KIND_DEFAULTS, CoupleConfig, EvalConfig
    seen = {}

    def fake_couple(ckpt, out, cfg, **kw):
        seen["couple"] = cfg
        raise SystemExit(0)

    def fake_eval(ckpt, cfg, **kw):
        seen["eval"] = cfg
        raise SystemExit(0)
    monkeypatch.setattr(stages, "couple", fake_couple)   # what the API's couple calls
    monkeypatch.setattr(evaluation, "evaluate_checkpoint", fake_eval)
    for data, image in (("digits", True), ("moons", False)):
        out = tmp_path / data
        assert cli("train", "--data", data, "--out", out, "--train-steps", "1", "--no-eval",
                   "--threads", "1")[0] == 0
        assert cli("couple", "--ckpt", out, "-n", "8")[0] == 0
        assert cli("eval", "--ckpt", out)[0] == 0
        img = KIND_DEFAULTS["image"]
        want_batch = img["couple"]["batch_size"] if image else CoupleConfig().batch_size
        want_n = img["compare"]["n"] if image else EvalConfig().n
        assert seen["couple"].batch_size == want_batch and seen["couple"].n == 8
        assert seen["eval"].n == want_n
