"""`rectflow train` end to end, exact resume, and the quality of the default moons preset."""
import json

import torch

from rectflow.stages import train as stages
from rectflow.records.checkpoint import Checkpoint
from rectflow.io.files import load_tensors
from rectflow.training.loop import TrainConfig


def test_cli_train_writes_a_loadable_checkpoint(cli, tmp_path):
    out = tmp_path / "rf1"
    code, stdout, err = cli("train", "--data", "8gaussians", "--train-steps", "30", "--batch-size", "256",
                            "--log-every", "10", "--out", out)
    assert code == 0, err
    for f in ("config.json", "model.safetensors", "ema.safetensors", "eval.json",
              "metrics.jsonl", "state/LATEST"):
        assert (out / f).is_file(), f
    ck = Checkpoint(out)
    assert ck.complete and ck.config["steps_done"] == 30 and ck.config["stage"] == "train"
    model = ck.load_model()
    assert model(torch.zeros(4, 2), torch.zeros(4)).shape == (4, 2)
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [10, 20, 30]
    assert "W2" in stdout and "straightness" in stdout
    # the same command again refuses to touch the finished run
    code, _, err = cli("train", "--data", "8gaussians", "--train-steps", "30", "--out", out)
    assert code == 2 and "--overwrite" in err and len(err.strip().splitlines()) == 1


def test_resumed_training_matches_an_uninterrupted_run(tmp_path):
    def cfg(steps):
        return TrainConfig(train_steps=steps, batch_size=128, save_every=10, log_every=5, warmup=7)
    stages.train(tmp_path / "full", "moons", options=cfg(40), evaluate=False)
    stages.train(tmp_path / "part", "moons", options=cfg(20), evaluate=False)
    stages.train(tmp_path / "part", "moons", options=cfg(40), resume=True, evaluate=False)
    for name in ("model.safetensors", "ema.safetensors"):
        a, b = load_tensors(tmp_path / "full" / name), load_tensors(tmp_path / "part" / name)
        for k in a:
            assert torch.equal(a[k], b[k]), (name, k)
    log = [json.loads(x) for x in (tmp_path / "part" / "metrics.jsonl").read_text().splitlines()]
    full = [json.loads(x) for x in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [r["step"] for r in full]
    assert [r["loss"] for r in log] == [r["loss"] for r in full]


def test_default_moons_flow_reaches_w2_below_0_15(moons_rf1):
    """Issue 2's quality bar: defaults, 100 Euler steps, exact W2 on 2,000 vs 2,000 points."""
    metrics = json.loads((moons_rf1 / "eval.json").read_text())
    assert metrics["n"] == 2000
    assert metrics["quality"]["100"]["w2"] < 0.15
    assert metrics["quality"]["100"]["w2"] < metrics["quality"]["1"]["w2"] / 5
