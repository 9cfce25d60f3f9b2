"""Path metrics against fields whose straightness is known in closed form."""
import math

import pytest
import torch

from rectflow.core.metrics import PathStats, mmd, ot_assignment, ot_cost, w2
from rectflow.core.solvers import solve

I2 = torch.eye(2, dtype=torch.float64)
L = torch.tensor([[2.0, 0.5], [0.5, 0.8]], dtype=torch.float64)   # SPD: I + t(L - I) invertible
THETA = 2.0
J = torch.tensor([[0.0, -1.0], [1.0, 0.0]], dtype=torch.float64)


def straight(z, t):
    """v(z, t) = (L - I)(I + t(L - I))^-1 z: the paths z_t = (I + t(L - I)) z0 are straight."""
    m = I2 + t[:, None, None] * (L - I2)
    return torch.linalg.solve(m, z.unsqueeze(-1)).squeeze(-1) @ (L - I2).T


def rotation(z, t):
    """v(z, t) = θ J z: circular arcs z_t = R(θ t) z0, curved."""
    return THETA * (z @ J.T)


def x0(n=64, *shape):
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, *(shape or (2,)), generator=g, dtype=torch.float64)


def stats_of(field, z0, method="rk4", steps=200, **kw):
    st = PathStats(math.prod(z0.shape[1:]))
    sol = solve(field, z0, method=method, steps=steps, observer=st.observer, **kw)
    st.finish(z0, sol.x)
    return st.result(), sol


@pytest.mark.parametrize("method", ["euler", "rk4", "dopri5"])
def test_straight_field_has_zero_straightness_and_curvature(method):
    z0 = x0()
    r, sol = stats_of(straight, z0, method)
    assert torch.allclose(sol.x, z0 @ L.T, atol=1e-9)
    assert r["straightness"] < 1e-12 and r["curvature"] < 1e-12
    assert r["transport_cost"] == pytest.approx(float(((z0 @ (L - I2).T) ** 2).sum(1).mean()))


def test_straight_paths_directly():
    """Feed the exact path z_t = z0 + t (L - I) z0 and its velocity to the observer."""
    z0 = x0()
    st = PathStats(2)
    grid = [0.0, 0.1, 0.15, 0.5, 0.9, 1.0]
    for t, t_next in zip(grid, grid[1:]):
        st.observer(t, t_next - t, z0 + t * z0 @ (L - I2).T, z0 @ (L - I2).T)
    st.finish(z0, z0 @ L.T)
    r = st.result()
    assert r["straightness"] < 1e-12 and r["curvature"] < 1e-12 and r["n"] == 64


def test_rotation_field_matches_closed_form():
    """|v| = θ|z0| and z1 - z0 = (R(θ) - I) z0, so S = (θ² - 2(1 - cos θ)) mean|z0|²."""
    z0 = x0(256)
    r2 = float(z0.pow(2).sum(1).mean())
    r, _ = stats_of(rotation, z0, "rk4", steps=400)
    assert r["straightness"] == pytest.approx((THETA**2 - 2 * (1 - math.cos(THETA))) * r2,
                                              rel=1e-2)
    assert r["transport_cost"] == pytest.approx(2 * (1 - math.cos(THETA)) * r2, rel=1e-9)
    assert r["curvature"] > 0.1


def test_per_dim_is_total_over_dimension():
    z0 = x0(32, 3, 2, 2)
    st = PathStats(12)
    sol = solve(lambda z, t: torch.sin(3 * t)[:, None, None, None] * z, z0, method="heun",
                steps=20, observer=st.observer)
    st.finish(z0, sol.x)
    r = st.result()
    assert r["straightness"] > 0
    assert r["straightness_per_dim"] == pytest.approx(r["straightness"] / 12, rel=1e-15)


def test_merge_of_two_halves_equals_the_whole():
    z0 = x0(100)
    whole, _ = stats_of(rotation, z0, "heun", steps=30)
    a, b = PathStats(2), PathStats(2)
    for st, part in ((a, z0[:37]), (b, z0[37:])):
        sol = solve(rotation, part, method="heun", steps=30, observer=st.observer)
        st.finish(part, sol.x)
    a.merge(b.state())
    merged = a.result()
    assert merged["n"] == 100
    for k in ("straightness", "straightness_per_dim", "curvature", "transport_cost"):
        assert merged[k] == pytest.approx(whole[k], rel=1e-12), k


def test_ot_cost_hand_solved():
    # 1-D: 0 -> 1 and 10 -> 11 (cost 1 each) beats the given pairing 0 -> 11, 10 -> 1
    x0 = torch.tensor([[0.0], [10.0]])
    x1 = torch.tensor([[11.0], [1.0]])
    assert ot_cost(x0, x1) == pytest.approx(1.0)
    assert ot_assignment(x0, x1).tolist() == [1, 0]
    # 2-D: unit square corners matched to themselves shifted by (3, 4): OT cost 25
    sq = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    shifted = (sq + torch.tensor([3.0, 4.0]))[[3, 0, 2, 1]]
    assert ot_cost(sq, shifted) == pytest.approx(25.0)
    assert w2(sq, shifted) == pytest.approx(5.0)
    with pytest.raises(ValueError):
        ot_cost(sq, sq[:3])


def test_mmd_zero_for_identical_positive_otherwise():
    a = x0(200).float()
    assert mmd(a, a) == pytest.approx(0.0, abs=1e-6)
    assert mmd(a, a + 1.0) > 0.1
