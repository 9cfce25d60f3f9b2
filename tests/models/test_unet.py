import json

import pytest
import torch

from rectflow.models.unet import UNet

CASES = [
    dict(channels=1, resolution=8, width=16, mults=[1, 2]),
    dict(channels=1, resolution=28, width=16, mults=[1, 2, 2], attn_resolutions=[7]),
    dict(channels=3, resolution=32, width=16, mults=[1, 2, 2], num_res_blocks=2,
         attn_resolutions=[16], dropout=0.1),
]


@pytest.mark.parametrize("kwargs", CASES, ids=lambda k: f"res{k['resolution']}")
def test_output_shape_and_zero_init(kwargs):
    torch.manual_seed(0)
    model = UNet(**kwargs).eval()
    x = torch.randn(3, kwargs["channels"], kwargs["resolution"], kwargs["resolution"])
    v = model(x, torch.rand(3))
    assert v.shape == x.shape
    assert torch.all(v == 0)  # zero-initialised output conv: untrained v is exactly 0


def test_rebuild_from_json_config_is_bit_identical():
    kwargs = dict(channels=1, resolution=28, width=16, mults=[1, 2, 2], attn_resolutions=[14, 7])
    torch.manual_seed(0)
    a = UNet(**kwargs)
    torch.nn.init.normal_(a.out[-1].weight, std=0.1)  # make the output depend on the weights
    b = UNet(**json.loads(json.dumps(kwargs)))
    b.load_state_dict(a.state_dict())
    a.eval(), b.eval()
    x, t = torch.randn(4, 1, 28, 28), torch.tensor([0.0, 0.3, 0.7, 1.0])
    with torch.no_grad():
        va, vb = a(x, t), b(x, t)
    assert va.abs().max() > 0
    assert torch.equal(va, vb)
    # and the time input matters
    with torch.no_grad():
        assert not torch.equal(a(x, t), a(x, t.flip(0)))


def test_invalid_resolution_raises():
    with pytest.raises(ValueError, match="not divisible by"):
        UNet(channels=1, resolution=28, mults=[1, 2, 2, 2])
    with pytest.raises(ValueError, match="attn_resolutions"):
        UNet(channels=1, resolution=8, mults=[1, 2], attn_resolutions=[16])


def test_group_norm_groups_divide_odd_widths():
    model = UNet(channels=3, resolution=8, width=12, mults=[1, 3])
    groups = [m for m in model.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert groups and all(m.num_channels % m.num_groups == 0 for m in groups)
    assert model(torch.randn(2, 3, 8, 8), torch.rand(2)).shape == (2, 3, 8, 8)


def test_gradient_reaches_every_parameter():
    torch.manual_seed(0)
    model = UNet(channels=1, resolution=8, width=16, mults=[1, 2], attn_resolutions=[4])
    torch.nn.init.normal_(model.out[-1].weight, std=0.1)
    x1, x0, t = torch.randn(4, 1, 8, 8), torch.randn(4, 1, 8, 8), torch.rand(4)
    xt = t[:, None, None, None] * x1 + (1 - t[:, None, None, None]) * x0
    loss = (model(xt, t) - (x1 - x0)).pow(2).mean()
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert p.grad.abs().sum() > 0, f"no gradient reaches {name}"
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    torch.optim.SGD(model.parameters(), lr=1e-2).step()
    assert all(not torch.equal(before[n], p) for n, p in model.named_parameters())
