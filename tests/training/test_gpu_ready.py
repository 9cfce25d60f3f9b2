"""Options for GPU runs, checked on the CPU: bf16 autocast, fp16 refused, torch.compile (and
its refusal without a C++ compiler), channels-last U-Nets."""
import subprocess

import torch

from rectflow.models import build_model
from rectflow.records.checkpoint import Checkpoint

from support import cli_cmd, max_weight_diff, subprocess_env

TINY = ["--data", "moons", "--hidden", 16, "--depth", 1, "--batch-size", 32, "--warmup", 0,
        "--no-eval"]


def train(cwd, out, *extra, env=None):
    return subprocess.run(cli_cmd("train", *TINY, "--out", out, *extra), cwd=cwd,
                          env=env or subprocess_env(), capture_output=True, text=True,
                          timeout=300)


def ok(r):
    assert r.returncode == 0, r.stderr[-2000:]


def refused(r, words: str):
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and words in lines[0], r.stderr


def test_bf16_trains_on_cpu_with_autocast_and_fp16_is_refused(tmp_path):
    ok(train(tmp_path, "fp32", "--train-steps", 5))
    ok(train(tmp_path, "bf16", "--train-steps", 5, "--mixed-precision", "bf16"))
    diff = max_weight_diff(tmp_path / "fp32" / "model.safetensors",
                           tmp_path / "bf16" / "model.safetensors")
    assert 0 < diff < 0.05, diff   # autocast ran (bf16 rounding moved the weights), and sanely
    assert Checkpoint(tmp_path / "bf16").config["train"]["mixed_precision"] == "bf16"
    refused(train(tmp_path, "fp16", "--train-steps", 5, "--mixed-precision", "fp16"),
            "fp16 needs a GPU")
    assert not (tmp_path / "fp16").exists()


def test_compile_trains_and_saves_plain_weights(tmp_path):
    ok(train(tmp_path, "plain", "--train-steps", 3))
    ok(train(tmp_path, "compiled", "--train-steps", 3, "--compile"))
    ck = Checkpoint(tmp_path / "compiled")
    assert ck.complete and ck.config["train"]["compile"] is True
    model = ck.load_model()   # keys without torch.compile's "_orig_mod." prefix
    assert model(torch.zeros(4, 2), torch.zeros(4)).shape == (4, 2)
    # the compiled forward computes what the plain one does, up to kernel fusion
    assert max_weight_diff(tmp_path / "plain" / "model.safetensors",
                           tmp_path / "compiled" / "model.safetensors") < 1e-4


def test_compile_without_a_cxx_compiler_is_refused_before_anything_is_written(tmp_path):
    env = {**subprocess_env(), "PATH": str(tmp_path / "nowhere")}
    env.pop("CXX", None)
    refused(train(tmp_path, "out", "--train-steps", 3, "--compile", env=env), "C++ compiler")
    assert not (tmp_path / "out").exists()


def test_channels_last_unet_matches_default_layout():
    torch.manual_seed(0)
    model = build_model(dict(type="unet", channels=3, resolution=8, width=8, mults=[1, 2],
                             attn_resolutions=[4], num_classes=4)).eval()
    with torch.no_grad():   # the output conv starts at zero: give it weights to compare
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    g = torch.Generator().manual_seed(1)
    x, t, y = torch.randn(5, 3, 8, 8, generator=g), torch.rand(5, generator=g), \
        torch.tensor([0, 1, 2, 3, 0])
    with torch.no_grad():
        ref = model(x, t, y=y)
        cl = model.to(memory_format=torch.channels_last)
        assert cl.down[0].conv1.weight.is_contiguous(memory_format=torch.channels_last)
        out = cl(x.to(memory_format=torch.channels_last), t, y=y)
    assert ref.abs().max() > 0.1
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_channels_last_trains_images_and_refuses_vectors(tmp_path):
    args = ["--data", "digits", "--train-steps", 2, "--batch-size", 16, "--no-eval",
            "--width", 8]
    r = subprocess.run(cli_cmd("train", *args, "--out", "cl", "--channels-last"),
                       cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True)
    ok(r)
    assert Checkpoint(tmp_path / "cl").load_model()(torch.zeros(2, 1, 8, 8),
                                                    torch.zeros(2)).shape == (2, 1, 8, 8)
    refused(train(tmp_path, "vec", "--train-steps", 2, "--channels-last"), "for images")
    assert not (tmp_path / "vec").exists()
