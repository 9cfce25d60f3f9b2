"""dopri5 steps each sample on its own and stops with one clear error when it cannot go on."""
import math

import pytest
import torch

from rectflow.errors import SolverError, UserError
from rectflow.models import build_model
from rectflow.core.solvers import solve


def mlp(dtype=torch.float32, time_scale=1.0):
    """A random MLP; the legacy time_scale=1000 makes it jagged in t (many, uneven steps)."""
    torch.manual_seed(3)   # tests only; the library never seeds the global generator
    cfg = {"type": "mlp", "dim": 2, "hidden": 64, "depth": 2, "time_embed": 16, "act": "silu",
           "time_scale": time_scale}
    return build_model(cfg).to(dtype).eval()


def noise(n, dtype=torch.float32):
    return torch.randn(n, 2, generator=torch.Generator().manual_seed(5), dtype=dtype)


@pytest.mark.parametrize("dtype,time_scale", [(torch.float32, 1.0), (torch.float64, 1000.0)])
def test_a_sample_solved_alone_matches_it_in_a_batch(dtype, time_scale):
    """float32 kernels round differently for 1 and 64 rows (~4e-8); on a field jagged in t
    that flips step decisions, so the float32 case uses smooth time features."""
    model, x = mlp(dtype, time_scale), noise(64, dtype)
    batch = solve(model, x, method="dopri5", rtol=1e-5, atol=1e-5)
    per = batch.nfe_per_sample
    assert per.min() < per.max()              # rows really took different numbers of steps
    for i in (0, int(per.argmax()), int(per.argmin()), 63):
        alone = solve(model, x[i:i + 1], method="dopri5", rtol=1e-5, atol=1e-5)
        assert torch.allclose(alone.x[0], batch.x[i], rtol=0, atol=1e-6)
        assert alone.nfe == per[i] == alone.nfe_max
    assert batch.nfe == pytest.approx(float(per.double().mean()))
    assert batch.nfe_max == int(per.max())


def test_finished_rows_are_not_evaluated():
    seen = []
    slow = torch.tensor([[0.0, 0.0], [3.0, 0.0]])   # row 1 oscillates fast, row 0 stays still

    def field(x, t):
        seen.append(x.shape[0])
        return torch.stack([x[:, 0] * 0, 40 * torch.cos(40 * t) * (x[:, 0] != 0)], 1)
    sol = solve(field, slow, method="dopri5", rtol=1e-6, atol=1e-6)
    assert sol.nfe_per_sample[0] < sol.nfe_per_sample[1]
    assert 1 in seen and sum(seen) == int(sol.nfe_per_sample.sum())
    assert sol.x[1, 1] == pytest.approx(math.sin(40.0), abs=1e-4)


def test_non_finite_state_stops_with_one_line():
    def blows_up(x, t):
        return torch.where(t[:, None] > 0.5, torch.full_like(x, math.nan), x)
    with pytest.raises(SolverError, match=r"non-finite .* t = 0\.") as e:
        solve(blows_up, noise(4), method="dopri5")
    assert "\n" not in str(e.value) and isinstance(e.value, UserError)
    with pytest.raises(SolverError, match="x0 has non-finite"):
        solve(lambda x, t: x, torch.tensor([[math.inf, 0.0]]), method="dopri5")


def test_step_size_floor():
    """dx/dt = 1/(0.3 - t) blows up at t = 0.3: steps shrink towards zero."""
    def singular(x, t):
        return (1.0 / (0.3 - t))[:, None].expand_as(x)
    with pytest.raises(SolverError, match="step size .* fell below the floor"):
        solve(singular, noise(2, torch.float64), method="dopri5", rtol=1e-6, atol=1e-6,
              max_nfe=10**7)


def test_max_nfe_per_sample():
    def wiggly(x, t):
        return torch.cos(300 * t)[:, None] * torch.ones_like(x)
    with pytest.raises(SolverError, match="more than max_nfe=50 .* loosen rtol/atol"):
        solve(wiggly, noise(2), method="dopri5", max_nfe=50)
    assert solve(wiggly, noise(2), method="dopri5").nfe_max > 50   # the default lets it finish


@pytest.mark.parametrize("kw,match", [
    ({"rtol": math.nan}, "rtol must be a finite number > 0, got nan"),
    ({"atol": 0.0}, "atol must be a finite number > 0, got 0.0"),
    ({"rtol": math.inf}, "rtol must be a finite number > 0, got inf"),
    ({"rtol": 1e-14}, "rtol must be >= 1e-12"),
    ({"atol": -1e-5}, "atol must be a finite number > 0"),
    ({"max_nfe": 0}, "max_nfe must be a whole number >= 1"),
])
def test_bad_tolerances_are_refused_before_any_evaluation(kw, match):
    calls = []
    with pytest.raises(SolverError, match=match):
        solve(lambda x, t: calls.append(1) or x, noise(2), method="dopri5", **kw)
    assert not calls


@pytest.mark.parametrize("steps", [0, -3, 2.5, None])
def test_bad_steps_are_refused(steps):
    with pytest.raises(SolverError, match="steps must be a whole number >= 1"):
        solve(lambda x, t: x, noise(2), method="rk4", steps=steps)
