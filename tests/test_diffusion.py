"""The VP diffusion objective: its probability-flow ODE and ancestral sampler against exact
answers for a Gaussian target, and a small trained model on moons against a rectified flow."""
from __future__ import annotations

import pytest
import torch

from rectflow.data.toy import ToyDataset
from rectflow.errors import UserError
from rectflow.evaluation import path_metrics
from rectflow.metrics import w2
from rectflow.models.mlp import MLP
from rectflow.objectives.diffusion import Diffusion
from rectflow.path import interpolate, target_velocity
from rectflow.seeding import derive_seed, generator
from rectflow.solvers import solve

M, S = torch.tensor([2.0, -1.0]), 0.5          # the Gaussian target N(M, S^2 I)
COMBOS = [(sch, pred) for sch in ("cosine", "linear") for pred in ("v", "eps")]


def exact_model(obj: Diffusion, m: torch.Tensor = M, s: float = S):
    """The exact eps or v predictor of N(m, s^2 I) (posterior means of x1 and x0 given x_t)."""
    def model(x, t):
        c = obj.coefficients(t)
        a, sig = c["alpha"].float()[:, None], c["sigma"].float()[:, None]
        x1 = m + a * s**2 / (a**2 * s**2 + sig**2) * (x - a * m)
        x0 = (x - a * x1) / sig
        return x0 if obj.prediction == "eps" else a * x0 - sig * x1
    return model


def noise(n: int, *keys) -> torch.Tensor:
    return torch.randn(n, 2, generator=generator(0, *keys))


@pytest.mark.parametrize("schedule,prediction", COMBOS)
def test_pf_ode_maps_noise_to_the_gaussian(schedule, prediction):
    obj = Diffusion(schedule, prediction)
    x0 = noise(4000, "ode")
    z = solve(obj.velocity(exact_model(obj)), x0, method="rk4", steps=200).x
    assert (z.mean(0) - M).abs().max() < 0.03 and (z.std(0) - S).abs().max() < 0.02
    # for an isotropic Gaussian the PF-ODE map is x0 -> M + S x0 pointwise; the linear
    # schedule starts at alpha(t=0) = 0.0066, not 0, hence its looser bound
    tol = 1e-3 if schedule == "cosine" else 0.015
    assert (z - (M + S * x0)).abs().max() < tol


@pytest.mark.parametrize("method,steps", [("euler", 1000), ("heun", 100), ("dopri5", 0)])
def test_pf_ode_with_every_solver(method, steps):
    for obj in (Diffusion("cosine", "v"), Diffusion("linear", "eps")):
        x0 = noise(500, "solvers")
        sol = solve(obj.velocity(exact_model(obj)), x0, method=method, steps=max(steps, 1))
        assert torch.isfinite(sol.x).all()
        assert (sol.x - (M + S * x0)).abs().max() < 0.02


@pytest.mark.parametrize("schedule,prediction", [("cosine", "v"), ("linear", "eps")])
def test_ancestral_sampler_reaches_the_gaussian(schedule, prediction):
    obj = Diffusion(schedule, prediction)
    z = obj.ancestral_sample(exact_model(obj), noise(5000, "anc"), 1000, generator(1, "anc"))
    # sampling error of the mean 0.007, of the std 0.005 (n = 5000)
    assert (z.mean(0) - M).abs().max() < 0.025 and (z.std(0) - S).abs().max() < 0.02
    # every draw comes from the generator given: same seed, same samples; new seed, new ones
    few = [obj.ancestral_sample(exact_model(obj), noise(64, "anc"), 50, generator(k, "anc"))
           for k in (1, 1, 2)]
    assert torch.equal(few[0], few[1]) and not torch.equal(few[0], few[2])


def test_vp_paths_off_centre_match_closed_form_and_bend_more_than_rf():
    """Data far from the noise's mean: the PF-ODE path is z_t = alpha m + r(t) x0 with
    r = sqrt(alpha^2 s^2 + sigma^2), travelled at uneven speed, while the exact 1-rectified
    flow moves the mean at constant speed t m. Straightness of both against the closed form."""
    m, s, steps = torch.tensor([3.0, 0.0]), 0.5, 1000
    obj = Diffusion()
    x0 = noise(2000, "straight")
    got = path_metrics(obj.velocity(exact_model(obj, m, s)), x0, "euler", steps,
                       ot_subsample=len(x0))["straightness"]
    # closed form on the same left Riemann sum: (z1 - z0) - v = (1 - alpha') m + (s - 1 - r') x0
    t = torch.arange(steps, dtype=torch.float64) / steps
    c = obj.coefficients(t)
    r = (c["alpha"] ** 2 * s**2 + c["sigma"] ** 2).sqrt()
    dr = (c["alpha"] * c["dalpha"] * s**2 + c["sigma"] * c["dsigma"]) / r
    a, b = 1 - c["dalpha"], s - 1 - dr
    x = x0.double()
    want = ((a**2).mean() * m.double().pow(2).sum() + 2 * (a * b).mean() * (x @ m.double()).mean()
            + (b**2).mean() * x.pow(2).sum(1).mean())
    assert got == pytest.approx(float(want), rel=0.02)

    def rf(x, t):                                     # exact E[x1 - x0 | x_t] for N(m, s^2 I)
        tb = t[:, None]
        var = tb**2 * s**2 + (1 - tb) ** 2
        return m + (tb * s**2 - (1 - tb)) / var * (x - tb * m)
    rf_s = path_metrics(rf, x0, "euler", steps, ot_subsample=len(x0))["straightness"]
    assert got > 3 * rf_s                             # VP 2.13, RF 0.42 (measured)


def test_loss_times_and_records():
    obj = Diffusion()
    assert (obj.schedule, obj.prediction, obj.eps) == ("cosine", "v", 1e-3)
    t = obj.sample_times(512, generator(0, "t"))["t"]
    assert t.shape == (512,) and t.min() >= obj.eps and t.max() <= 1 - obj.eps
    assert torch.equal(t, obj.sample_times(512, generator(0, "t"))["t"])
    x0, x1 = noise(512, "x0"), noise(512, "x1") + 3.0
    for pred in ("v", "eps"):
        o = Diffusion(prediction=pred)
        # a "model" that knows the pair returns the target exactly: zero loss
        oracle = lambda x, tt: o.target(x0, x1, tt)   # noqa: E731
        loss = o.loss(oracle, x0, x1, {"t": t})
        assert loss.shape == (512,) and float(loss.abs().max()) < 1e-10
        assert float(o.loss(lambda x, tt: torch.zeros_like(x), x0, x1, {"t": t}).mean()) > 0.5
    c = obj.coefficients(torch.tensor([0.0, 0.5, 1.0]))
    assert torch.allclose(c["alpha"] ** 2 + c["sigma"] ** 2, torch.ones(3, dtype=torch.float64))
    assert c["alpha"][0] < 2e-3 and c["sigma"][2] < 0.01          # clipped, nearly the ends
    for o in (obj, Diffusion("linear", "eps", 1e-4)):
        assert Diffusion.from_json(o.to_json()).to_json() == o.to_json()
    bad = [dict(schedule="sqrt"), dict(prediction="x"), dict(eps=float("nan")), dict(eps=0.5)]
    for kw in bad:
        with pytest.raises(UserError, match=f"^{next(iter(kw))} must be"):
            Diffusion(**kw)
    with pytest.raises(UserError, match="unknown diffusion setting 'beta'"):
        Diffusion.from_json({"name": "diffusion", "beta": 1})
    with pytest.raises(UserError, match="steps must be"):
        obj.ancestral_sample(exact_model(obj), x0, 0, generator(0))


def _train(loss_fn, steps: int = 1000, batch: int = 256):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(0, "init"))
        model = MLP(2, hidden=64, depth=3)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    data, g = ToyDataset("moons"), generator(0, "train")
    for _ in range(steps):
        x1 = data.sample(batch, g)
        x0 = torch.randn(batch, 2, generator=g)
        loss = loss_fn(model, x0, x1, g).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def test_trained_on_moons_ode_and_ancestral_agree():
    """Same MLP, initial weights, data stream and budget (1000 Adam steps, batch 256) for a
    diffusion model and a rectified flow. Measured (n = 1000): W2 floor 0.127, W2(ODE,
    ancestral) 0.126, W2 to held-out data 0.264 (ODE) / 0.285 (ancestral), of the noise 0.589;
    straightness diffusion 0.128 vs RF 0.863. On standardised moons the VP PF-ODE is the
    straighter one at about the same transport (0.240 vs 0.258): its marginals keep unit
    variance all the way, while RF's straight interpolant halves the variance at t = 1/2, so
    RF's ODE paths first contract, then expand. (Off-centre data reverse this: see above.)
    An ancestral sampler with its noise halved or doubled measured W2(ODE, ancestral) 0.35."""
    obj = Diffusion()
    dm = _train(lambda m, x0, x1, g: obj.loss(m, x0, x1, obj.sample_times(x0.shape[0], g)))

    def fm(m, x0, x1, g):
        t = torch.rand(x0.shape[0], generator=g)
        return (m(interpolate(x0, x1, t), t) - target_velocity(x0, x1)).pow(2).mean(1)
    rf = _train(fm)

    n, data = 1000, ToyDataset("moons")
    ref, ref2 = data.sample(n, generator(1, "ref")), data.sample(n, generator(2, "ref"))
    floor = w2(ref, ref2)
    x0 = noise(n, "moons-ode")
    ode = solve(obj.velocity(dm), x0, method="rk4", steps=100).x
    anc = obj.ancestral_sample(dm, noise(n, "moons-anc"), 1000, generator(3, "anc"))
    between, ode_ref, anc_ref = w2(ode, anc), w2(ode, ref), w2(anc, ref)
    p_dm = path_metrics(obj.velocity(dm), x0, "euler", 100, ot_subsample=n)
    p_rf = path_metrics(rf, x0, "euler", 100, ot_subsample=n)
    s_dm, s_rf = p_dm["straightness"], p_rf["straightness"]
    print(f"floor {floor:.3f} ode-anc {between:.3f} ode-ref {ode_ref:.3f} "
          f"anc-ref {anc_ref:.3f} straightness diffusion {s_dm:.3f} rf {s_rf:.3f} transport "
          f"diffusion {p_dm['transport_cost']:.3f} rf {p_rf['transport_cost']:.3f}")
    assert between < 1.5 * floor
    assert ode_ref < 2.5 * floor and anc_ref < 2.5 * floor
    assert ode_ref < 0.7 * w2(x0, ref)               # the noise itself: 0.589
    assert s_dm < 0.5 * s_rf
