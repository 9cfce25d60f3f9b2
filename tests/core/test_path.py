import math

import pytest
import torch
from scipy import integrate

from rectflow.core.path import TimeDist, interpolate, target_velocity

N = 200_000


def test_interpolant_runs_from_noise_at_0_to_data_at_1():
    g = torch.Generator().manual_seed(0)
    x0, x1 = torch.randn(8, 3, generator=g), torch.randn(8, 3, generator=g)
    assert torch.equal(interpolate(x0, x1, torch.zeros(8)), x0)
    assert torch.equal(interpolate(x0, x1, torch.ones(8)), x1)
    t = torch.rand(8, generator=g)
    assert torch.allclose(interpolate(x0, x1, t), t[:, None] * x1 + (1 - t[:, None]) * x0)
    assert torch.equal(target_velocity(x0, x1), x1 - x0)


def test_interpolant_broadcasts_over_image_shapes():
    x0, x1 = torch.zeros(4, 1, 2, 2), torch.ones(4, 1, 2, 2)
    xt = interpolate(x0, x1, torch.tensor([0.0, 0.25, 0.5, 1.0]))
    assert xt.shape == (4, 1, 2, 2)
    assert xt[:, 0, 0, 0].tolist() == [0.0, 0.25, 0.5, 1.0]


def _draw(td):
    return td.sample(N, torch.Generator().manual_seed(1)).double()


def test_uniform_moments():
    t = _draw(TimeDist("uniform"))
    assert t.min() >= 0 and t.max() <= 1
    assert abs(t.mean() - 0.5) < 0.005 and abs(t.var() - 1 / 12) < 0.002


def test_logit_normal_moments():
    t = _draw(TimeDist("logit-normal", mean=0.5, std=0.8))
    assert t.min() > 0 and t.max() < 1
    z = torch.log(t / (1 - t))
    assert abs(z.mean() - 0.5) < 0.01 and abs(z.std() - 0.8) < 0.01


def test_u_shaped_matches_its_density():
    a = 4.0
    t = _draw(TimeDist("u-shaped", a=a))
    assert t.min() >= 0 and t.max() <= 1
    z = integrate.quad(lambda s: math.cosh(a * (s - 0.5)), 0, 1)[0]
    mean = integrate.quad(lambda s: s * math.cosh(a * (s - 0.5)), 0, 1)[0] / z
    var = integrate.quad(lambda s: (s - mean) ** 2 * math.cosh(a * (s - 0.5)), 0, 1)[0] / z
    assert abs(t.mean() - mean) < 0.005 and abs(t.var() - var) < 0.003
    # U-shaped: more mass near the ends than in the middle
    ends = ((t < 0.1) | (t > 0.9)).double().mean()
    middle = ((t > 0.45) & (t < 0.55)).double().mean()
    assert ends > 4 * middle


@pytest.mark.parametrize("k", [1, 2, 4])
def test_grid_is_uniform_on_k_points(k):
    t = _draw(TimeDist("grid", k=k))
    values = sorted(set(t.tolist()))
    assert values == [i / k for i in range(k)]
    freq = torch.stack([(t == v).double().mean() for v in values])
    assert torch.allclose(freq, torch.full_like(freq, 1 / k), atol=0.01)


def test_time_dist_round_trips_through_json():
    for td in (TimeDist("uniform"), TimeDist("logit-normal", 0.3, 1.2), TimeDist("u-shaped", a=3),
               TimeDist("grid", k=4)):
        assert TimeDist.from_json(td.to_json()) == td


def test_samples_come_only_from_the_generator():
    td = TimeDist("u-shaped")
    a = td.sample(10, torch.Generator().manual_seed(5))
    torch.manual_seed(123)
    b = td.sample(10, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
