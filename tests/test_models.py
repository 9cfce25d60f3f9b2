import json

import pytest
import torch

from rectflow.checkpoint import Checkpoint, load_weights, save_tensors
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
