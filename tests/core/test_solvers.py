"""Solvers against analytic answers (float64, so only truncation error is measured)."""
import math

import pytest
import torch

from rectflow.core.solvers import FIXED, METHODS, chunked, solve

A = torch.tensor([[-0.5, 2.0], [-1.5, -0.3]], dtype=torch.float64)


def linear(x, t):
    """dx/dt = A x: x(1) = expm(A) x0."""
    return x @ A.T


def linear_in_t(x, t):
    """dx/dt = t A x: x(1) = expm(A / 2) x0; checks each stage is evaluated at its own time."""
    return t[:, None] * (x @ A.T)


EXACT = {linear: torch.linalg.matrix_exp(A), linear_in_t: torch.linalg.matrix_exp(A / 2)}


def x0(n=16):
    return torch.randn(n, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def error(field, method, **kw):
    z = x0()
    sol = solve(field, z, method=method, **kw)
    return float((sol.x - z @ EXACT[field].T).abs().max()), sol


@pytest.mark.parametrize("method", METHODS)
def test_constant_field_exact_in_one_step(method):
    a = torch.tensor([3.0, -1.25], dtype=torch.float64)
    z = x0()
    sol = solve(lambda x, t: a.expand_as(x), z, method=method, steps=1)
    assert torch.allclose(sol.x, z + a, rtol=0, atol=1e-14)
    if method in FIXED:
        assert sol.nfe == {"euler": 1, "heun": 2, "rk4": 4}[method]


@pytest.mark.parametrize("field", [linear, linear_in_t], ids=["Ax", "tAx"])
@pytest.mark.parametrize("method,order", [("euler", 1), ("heun", 2), ("rk4", 4)])
def test_observed_order(field, method, order):
    errs = [error(field, method, steps=n)[0] for n in (16, 32, 64)]
    orders = [math.log2(a / b) for a, b in zip(errs, errs[1:])]
    assert all(abs(p - order) < 0.15 for p in orders), (errs, orders)


def test_dopri5_meets_tolerance_with_fewer_nfe_than_rk4():
    tol = 1e-8
    err, sol = error(linear, "dopri5", rtol=tol, atol=tol)
    assert err < 20 * tol, err            # global error within a small multiple of the local tol
    assert sol.nfe_max > 7 and sol.nfe <= sol.nfe_max
    assert sol.nfe == pytest.approx(float(sol.nfe_per_sample.double().mean()))
    # the cheapest uniform RK4 grid that is at least as accurate
    steps = next(n for n in range(1, 500) if error(linear, "rk4", steps=n)[0] <= err)
    assert 4 * steps > sol.nfe, (steps, sol.nfe)
    looser, sol_loose = error(linear, "dopri5", rtol=1e-4, atol=1e-4)
    assert sol_loose.nfe < sol.nfe and err < looser < 2e-3


@pytest.mark.parametrize("method", FIXED)
def test_custom_grid_and_observer(method):
    grid = [0.0, 0.05, 0.1, 0.3, 0.35, 0.7, 1.0]
    seen = []
    sol = solve(linear, x0(), method=method, grid=grid,
                observer=lambda t, dt, z, v: seen.append((t, dt, z.shape, v.shape)))
    assert [s[0] for s in seen] == grid[:-1]
    assert [s[1] for s in seen] == pytest.approx([b - a for a, b in zip(grid, grid[1:])])
    assert math.isclose(sum(s[1] for s in seen), 1.0, abs_tol=1e-12)
    assert sol.times == grid and sol.nfe == 6 * {"euler": 1, "heun": 2, "rk4": 4}[method]
    # a finer non-uniform grid is more accurate than a coarser one
    fine = [(i / 60) ** 1.5 for i in range(61)]
    assert error(linear, method, grid=fine)[0] < error(linear, method, grid=grid)[0]


def test_dopri5_observer_dt_sums_to_one_for_every_row():
    dts = []
    solve(linear, x0(), method="dopri5", observer=lambda t, dt, z, v: dts.append(dt))
    total = torch.stack(dts).sum(0)
    assert total.shape == (16,) and torch.allclose(total, torch.ones(16, dtype=torch.float64),
                                                   rtol=0, atol=1e-12)


@pytest.mark.parametrize("method", METHODS)
def test_record_trajectory_shape(method):
    z = torch.randn(5, 3, 2, 2)
    sol = solve(lambda x, t: -x, z, method=method, steps=7, record=True)
    rows = len(sol.times) if method != "dopri5" else sol.row_times.shape[0]
    assert sol.trajectory.shape == (rows, 5, 3, 2, 2)
    assert torch.equal(sol.trajectory[0], z) and torch.equal(sol.trajectory[-1], sol.x)
    if method != "dopri5":
        assert len(sol.times) == 8
    else:
        assert (sol.row_times[0] == 0).all() and (sol.row_times[-1] == 1).all()
    assert solve(lambda x, t: -x, z, method=method, steps=7).trajectory is None


def test_velocity_sees_batched_t_on_the_input_device_and_dtype():
    seen = []

    def field(x, t):
        seen.append((t.shape, t.dtype, t.device))
        return torch.zeros_like(x)
    solve(field, torch.zeros(4, 2, dtype=torch.float64), method="rk4", steps=2)
    assert set(seen) == {((4,), torch.float64, torch.device("cpu"))}


def test_chunked_calls_the_model_on_fixed_size_chunks():
    sizes = []

    def field(x, t):
        sizes.append(x.shape[0])
        return 2 * x + t[:, None]
    x, t = torch.randn(10, 2), torch.rand(10)
    out = chunked(field, 4)(x, t)
    assert sizes == [4, 4, 4] and torch.equal(out, 2 * x + t[:, None])


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown solver"):
        solve(linear, x0(), method="rk45")
    with pytest.raises(ValueError, match="grid"):
        solve(linear, x0(), grid=[0.0, 0.6, 0.5, 1.0])
    with pytest.raises(ValueError, match="steps"):
        solve(linear, x0(), steps=0)


def test_extras_reach_the_velocity_row_by_row_for_every_method():
    """Labels ride beside the state: each row gets its own, also when dopri5 steps only some
    rows and when chunked pads the last chunk; the result equals a solve of each class alone."""
    def v(x, t, y):
        assert y.shape[0] == x.shape[0]
        return (y.to(x.dtype) + 1)[:, None] * torch.cos(3 * t)[:, None] * x

    x0 = torch.randn(10, 2, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 2, 1, 0, 2, 2, 1, 0, 0, 1])
    for method in METHODS:
        joint = solve(chunked(v, 4), x0, method=method, steps=8, extras={"y": y}).x
        for c in range(3):
            m = y == c
            alone = solve(v, x0[m], method=method, steps=8, extras={"y": y[m]}).x
            assert torch.allclose(joint[m], alone, atol=1e-6), method
