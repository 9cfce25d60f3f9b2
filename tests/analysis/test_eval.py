"""Metrics and `rectflow eval`: W2/MMD/Fréchet sanity, the digits feature classifier, caching."""
import json

import numpy as np
import pytest

from rectflow.errors import UserError
import torch

from rectflow.analysis import features
from rectflow.stages import train as stages
from rectflow.data import load_dataset
from rectflow.analysis.evaluate import EvalConfig, evaluate_checkpoint
from rectflow.core.metrics import mmd, w2
from rectflow.training.loop import TrainConfig


@pytest.fixture(scope="module")
def moons_ckpt(tmp_path_factory):
    out = tmp_path_factory.mktemp("eval") / "rf1"
    stages.train(out, "moons", options=TrainConfig(train_steps=60, batch_size=256, log_every=30),
                 evaluate=False)
    return out


@pytest.fixture(scope="module")
def digits_features(tmp_path_factory):
    root = tmp_path_factory.mktemp("features")
    net, info = features.classifier({"name": "digits"}, root)
    return root, net, info


def test_w2_is_zero_on_itself_and_the_shift_norm_on_a_shifted_copy():
    x = torch.randn(300, 3, generator=torch.Generator().manual_seed(0))
    shift = torch.tensor([0.3, -0.4, 1.2])
    assert w2(x, x) == pytest.approx(0.0, abs=1e-9)
    assert w2(x, x + shift) == pytest.approx(float(shift.norm()), rel=1e-6)
    assert w2(x, x[torch.randperm(300)]) == pytest.approx(0.0, abs=1e-9)


def test_mmd_is_zero_for_identical_sets_and_positive_otherwise():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(400, 2, generator=g)
    assert mmd(x, x.clone()) == pytest.approx(0.0, abs=1e-6)
    assert mmd(x, x + 1.0) > 0.1


def test_frechet_distance_of_gaussians():
    g = torch.Generator().manual_seed(2)
    f = torch.randn(2000, 4, generator=g).double().numpy()
    a = (f.mean(0), np.cov(f, rowvar=False))
    assert features.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    b = (a[0] + 2.0, a[1])   # mean shifted by 2 in each of 4 dims: |d mu|^2 = 16
    assert features.frechet_distance(a, b) == pytest.approx(16.0, rel=1e-6)


def test_digits_classifier_is_accurate_cached_and_aligned(digits_features):
    root, net, info = digits_features
    assert info["test_accuracy"] >= 0.90
    assert (root / "digits" / "model.safetensors").is_file()
    cached = json.loads((root / "digits" / "config.json").read_text())
    assert cached["test_accuracy"] == info["test_accuracy"] and cached["sha256"]
    x, y = features.labelled({"name": "digits"}, "test")
    assert torch.equal(x, load_dataset({"name": "digits"}, "test").take(torch.arange(297)))
    again, info2 = features.classifier({"name": "digits"}, root)   # loads, does not retrain
    assert info2["seconds"] == info["seconds"]
    with torch.inference_mode():
        assert torch.equal(again(x[:8]), net(x[:8]))


def test_eval_writes_eval_json_and_reuses_it(moons_ckpt):
    cfg = EvalConfig(steps=(1, 4), n=300, path_steps=20, reference_rtol=1e-3, reference_atol=1e-3)
    report = moons_ckpt.parent / "rf1-eval.json"
    ev = evaluate_checkpoint(moons_ckpt, cfg, out=report)
    saved = json.loads(report.read_text())
    assert saved["format"] == "rectflow/eval" and saved["weights_sha256"] == ev.weights_sha256
    assert set(saved["quality"]) == {"1", "4"} and saved["quality"]["4"]["nfe"] == 4
    assert {"w2", "mmd"} <= set(saved["quality"]["1"]) and "kernel" in saved["metrics"]["mmd"]
    assert saved["reference"]["nfe"] > 4 and saved["reference"]["solver"] == "dopri5"
    p = saved["path"]
    assert p["transport_cost"] >= p["ot_cost"] - 1e-9 and p["straightness"] >= 0
    assert not getattr(ev, "cached", False)
    assert evaluate_checkpoint(moons_ckpt, cfg, out=report).cached is True
    cfg2 = EvalConfig(steps=(1, 2), n=300, path_steps=20, reference_rtol=1e-3, reference_atol=1e-3)
    assert not getattr(evaluate_checkpoint(moons_ckpt, cfg2), "cached", False)
    with pytest.raises(UserError, match="overwrite"):   # another report is not written over
        evaluate_checkpoint(moons_ckpt, cfg2, out=report)


def test_cli_eval_prints_tables_and_rejects_bad_nfe(cli, moons_ckpt, tmp_path):
    out = tmp_path / "e.json"
    code, stdout, err = cli("eval", "--ckpt", moons_ckpt, "--steps", "1,2", "--n", "200",
                            "--path-steps", "10", "--rtol", "1e-3", "--atol", "1e-3", "--out", out)
    assert code == 0, err
    assert "dopri5" in stdout and "straightness" in stdout and out.is_file()
    code, _, err = cli("eval", "--ckpt", moons_ckpt, "--steps", "1,x")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--steps" in err
    code, _, err = cli("eval", "--ckpt", moons_ckpt, "--solver", "dopri5")
    assert code == 2 and "one of euler, heun, rk4" in err


def test_image_eval_reports_fd_from_the_cached_classifier(tmp_path, digits_features):
    root, _, info = digits_features
    ck = tmp_path / "digits"
    stages.train(ck, "digits", options=TrainConfig(train_steps=4, batch_size=32), evaluate=False)
    cfg = EvalConfig(steps=(1, 2), n=64, path_steps=4, image_w2_subsample=32,
                     reference_rtol=1e-2, reference_atol=1e-2)
    ev = evaluate_checkpoint(ck, cfg, features_dir=root)
    assert ev.image and set(ev.metrics) == {"w2", "fd"}
    assert ev.quality["1"]["fd"] > 0 and ev.args["image_w2_subsample"] == 32
    assert ev.classifier["test_accuracy"] == info["test_accuracy"]
    assert ev.args["classifier_sha256"] == info["sha256"]


def test_fid_features_from_safetensors_inception(tmp_path):
    """A randomly initialised torchvision Inception-v3, saved as safetensors, loads strictly
    (no pickle) and gives 2048-d pool features for grey 8x8 images."""
    from safetensors.torch import save_file
    from torchvision.models import inception_v3
    torch.manual_seed(0)
    net = inception_v3(weights=None, aux_logits=True, init_weights=False)
    path = tmp_path / "inception.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    fn = features.inception(path)
    with torch.inference_mode():
        f = fn(torch.rand(2, 1, 8, 8) * 2 - 1)
    assert f.shape == (2, 2048) and torch.isfinite(f).all() and f.std() > 0
    bad = tmp_path / "bad.safetensors"
    save_file({"fc.weight": torch.zeros(3, 3)}, str(bad))
    from rectflow.errors import CheckpointError
    with pytest.raises(CheckpointError):
        features.inception(bad)
