import json

import pytest
import torch

from rectflow.records.checkpoint import Checkpoint, load_weights
from rectflow.io.files import save_tensors
from rectflow.errors import CheckpointError
from rectflow.models import build_model, default_model_config
from rectflow.records import RunCard


@pytest.mark.parametrize("shape", [(2,), (5,), (1, 8, 8)])
def test_model_round_trips_through_json_and_safetensors(tmp_path, shape):
    cfg = default_model_config(shape)
    torch.manual_seed(0)
    model = build_model(cfg)
    with torch.no_grad():   # make the zero-initialised output layers non-trivial
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    save_tensors(tmp_path / "ema.safetensors", model.state_dict())
    RunCard(stage="train", data={"name": "x"}, shape=list(shape), model=cfg,
            train={}).write(tmp_path)
    cfg_back = json.loads((tmp_path / "config.json").read_text())["model"]
    rebuilt = Checkpoint(tmp_path).load_model(ema=True)
    assert cfg_back == cfg
    x = torch.randn(3, *shape)
    t = torch.rand(3)
    with torch.no_grad():
        assert torch.equal(model.eval()(x, t), rebuilt(x, t))
    for k, v in model.state_dict().items():
        assert torch.equal(v, rebuilt.state_dict()[k])


def test_weights_that_do_not_fit_the_config_are_refused(tmp_path):
    small = build_model(default_model_config((2,), hidden=16))
    save_tensors(tmp_path / "w.safetensors", small.state_dict())
    big = build_model(default_model_config((2,), hidden=32))
    with pytest.raises(CheckpointError, match="does not match"):
        load_weights(big, tmp_path / "w.safetensors")


def test_unknown_model_type_is_a_checkpoint_error():
    with pytest.raises(CheckpointError, match="unknown model type"):
        build_model({"type": "transformer"})
    with pytest.raises(CheckpointError, match="does not fit"):
        build_model({"type": "mlp", "dim": 2, "bogus": 1})


def test_config_without_time_scale_keeps_the_legacy_embedding():
    """Checkpoints written before time_scale existed rebuild with t scaled by 1000."""
    from rectflow.models.embedding import LEGACY_TIME_SCALE
    old = {"type": "mlp", "dim": 2, "hidden": 16, "depth": 2, "time_embed": 8, "act": "silu"}
    model = build_model(old)
    assert model.embed.time_scale == LEGACY_TIME_SCALE == 1000.0
    t = torch.tensor([0.0, 0.25, 0.7])
    freqs = torch.exp(-torch.log(torch.tensor(10000.0)) * torch.arange(4) / 4)
    args = 1000.0 * t[:, None] * freqs[None, :]
    assert torch.allclose(model.embed(t), torch.cat([args.sin(), args.cos()], 1), atol=1e-5)
    unet = build_model({"type": "unet", "channels": 1, "resolution": 8, "width": 8})
    assert unet.embed.time_scale == 1000.0


def test_time_scale_is_a_recorded_field_and_bounds_the_time_features_slope():
    cfg = {"type": "mlp", "dim": 2, "hidden": 16, "depth": 2, "time_embed": 32,
           "time_scale": 1.0}
    smooth, jagged = build_model(cfg), build_model({**cfg, "time_scale": 1000.0})
    t = torch.linspace(0, 1, 2001)
    slope = lambda m: float((m.embed(t[1:]) - m.embed(t[:-1])).abs().max() / 5e-4)  # noqa: E731
    assert slope(smooth) <= 1.0 + 1e-3          # the fastest feature is sin(t), cos(t)
    assert slope(jagged) > 500
    unet = build_model({"type": "unet", "channels": 1, "resolution": 8, "width": 8,
                        "time_scale": 2.0, "max_period": 100.0})
    assert unet.embed.time_scale == 2.0
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(CheckpointError, match="time_scale must be a finite number > 0"):
            build_model({**cfg, "time_scale": bad})
