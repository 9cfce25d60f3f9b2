"""Noise floors, seed summaries, ties, and path figures on one set of endpoints."""
import math

import pytest
import torch

from rectflow.core.metrics import (PathStats, Summary, metric_floor, mmd, path_report, summarize, tie_groups, w2)
from rectflow.models import build_model
from rectflow.core.solvers import solve


def gauss(n, g):
    return torch.randn(n, 2, generator=g)


def test_floor_shrinks_with_n_and_matches_a_model_that_is_the_data():
    small, large = metric_floor(gauss, 50, w2), metric_floor(gauss, 400, w2)
    assert small.k == large.k == 5 and 0 < large.mean < small.mean and small.std > 0
    # a "model" that draws from the data distribution itself sits on the floor
    g = torch.Generator().manual_seed(123)
    fake = summarize(w2(gauss(400, g), gauss(400, g)) for _ in range(5))
    assert abs(fake.mean - large.mean) < 3 * math.hypot(fake.std, large.std)
    # a shifted model is far above it
    assert w2(gauss(400, g) + 0.5, gauss(400, g)) > large.mean + 10 * large.std
    assert metric_floor(gauss, 200, mmd, repeats=3).k == 3


def test_floor_from_held_out_points_uses_disjoint_subsets():
    pool = torch.arange(40, dtype=torch.float64)[:, None]
    seen = []

    def spy(a, b):
        seen.append((set(a[:, 0].tolist()), set(b[:, 0].tolist())))
        return 0.0
    metric_floor(pool, 20, spy, repeats=3)
    assert all(not (a & b) and len(a) == len(b) == 20 for a, b in seen)
    assert seen[0] != seen[1]
    with pytest.raises(ValueError, match="needs 82 held-out points"):
        metric_floor(pool, 41, w2)


def test_floor_is_seeded_and_leaves_the_global_rng_alone():
    state = torch.random.get_rng_state()
    assert metric_floor(gauss, 50, w2, seed=4) == metric_floor(gauss, 50, w2, seed=4)
    assert metric_floor(gauss, 50, w2, seed=4) != metric_floor(gauss, 50, w2, seed=5)
    assert torch.equal(state, torch.random.get_rng_state())


def test_summarize():
    s = summarize([1.0, 2.0, 3.0])
    assert (s.mean, s.std, s.k) == (2.0, 1.0, 3) and str(s) == "2 ± 1 (K=3)"
    assert summarize([0.5]).std == 0.0
    with pytest.raises(ValueError):
        summarize([1.0, float("nan")])
    with pytest.raises(ValueError):
        summarize([])


def test_ties_follow_the_documented_rule():
    r = {"a": Summary(0.100, 0.002, 5), "b": Summary(0.104, 0.002, 5),   # 0.004 < 2*0.0028
         "c": Summary(0.110, 0.002, 5),                                   # 0.010 from a: new
         "d": Summary(0.113, 0.001, 5), "e": Summary(0.200, 0.0, 5)}
    assert tie_groups(r) == [["a", "b"], ["c", "d"], ["e"]]
    # anchoring: b ties a and c ties b, but c is too far from a to join a's group
    chain = {"a": Summary(0.0, 0.01, 3), "b": Summary(0.025, 0.01, 3), "c": Summary(0.05, 0.01, 3)}
    assert tie_groups(chain) == [["a", "b"], ["c"]]
    # a noisy floor (0.099 ± 0.006): a, b, c are within 0.099 + 2 * 0.006 = 0.111 of it, d
    # (0.113) is not, and e is far
    assert tie_groups(r, Summary(0.099, 0.006, 5)) == [["a", "b", "c"], ["d"], ["e"]]
    # models at the floor are one group even when far apart from each other in seeds' terms
    exact = {"x": Summary(0.050, 0.0, 3), "y": Summary(0.051, 0.0, 3), "z": Summary(0.06, 0.0, 3)}
    assert tie_groups(exact) == [["x"], ["y"], ["z"]]
    assert tie_groups(exact, Summary(0.0505, 0.0003, 5)) == [["x", "y"], ["z"]]
    assert tie_groups(exact, 0.0505) == [["x"], ["y"], ["z"]]   # an exact floor: no slack


def _paths(field, z0):
    st = PathStats(2)
    sol = solve(field, z0, method="rk4", steps=40, observer=st.observer)
    st.finish(z0, sol.x)
    return st, sol.x


@pytest.mark.parametrize("flow", ["random", "identity-like", "rotation"])
def test_ot_cost_never_exceeds_transport_cost_on_the_same_set(flow):
    z0 = torch.randn(300, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    if flow == "random":
        torch.manual_seed(0)   # tests only
        net = build_model({"type": "mlp", "dim": 2, "hidden": 32, "depth": 2, "time_embed": 8,
                           "time_scale": 1.0}).double()
        field = lambda x, t: 3 * net(x, t)   # noqa: E731
    elif flow == "identity-like":
        field = lambda x, t: 1e-3 * torch.sin(x)   # noqa: E731
    else:   # turns N(0, I) onto itself: the optimal coupling is the identity, cost ~ 0
        field = lambda x, t: 2.0 * x.flip(1) * torch.tensor([-1.0, 1.0], dtype=x.dtype)  # noqa: E731
    st, z1 = _paths(field, z0)
    r = path_report(st, z0, z1)
    assert r["n"] == 300
    assert r["ot_cost"] <= r["transport_cost"] + 1e-12 and r["ot_gap"] >= -1e-12
    if flow == "rotation":
        assert r["ot_gap"] > 0.5 * r["transport_cost"]
    elif flow == "identity-like":
        assert r["ot_cost"] == pytest.approx(r["transport_cost"], rel=1e-9)
    assert r["straightness"] >= 0 and r["transport_cost"] > 0


def test_path_report_refuses_two_different_sets():
    z0 = torch.randn(50, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    st, z1 = _paths(lambda x, t: -x, z0)
    with pytest.raises(ValueError, match="one set"):
        path_report(st, z0[:20], z1[:20])
    with pytest.raises(ValueError, match="not those"):
        path_report(st, z0, z1.flip(0))
