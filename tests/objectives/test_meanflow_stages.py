"""MeanFlow through the stages: train --objective meanflow, sample and eval at one step through
the CLI, reflow --objective meanflow from a flow teacher with Re-MeanFlow's pair filter, and the
interval input of the built-in models.

The target is the two-blob point cloud of tests/support.py; every training is a few dozen steps
of a 2x32 MLP, so these tests check plumbing and exact equalities, not sample quality
(benchmarks/meanflow_vs_distill.py measures that).
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from rectflow.stages import train as stages
from rectflow.records.checkpoint import Checkpoint
from rectflow.data import Normalization, load_dataset
from rectflow.data.pairs import PairsDataset, StoredPairs
from rectflow.errors import UserError
from rectflow.core.seeding import noise
from rectflow.analysis.evaluate import quality, reference_data
from rectflow.models import build_model, default_model_config, load_into_interval
from rectflow.objectives.meanflow import pair_distances, sample_steps
from rectflow.options import TrainConfig
from support import TINY_MODEL, point_cloud, small_pairs, tiny_checkpoint

TINY = ["--train-steps", "40", "--batch-size", "64", "--lr", "1e-2", "--warmup", "0",
        "--hidden", "32", "--depth", "2", "--no-eval"]


@pytest.fixture(scope="module")
def blobs(tmp_path_factory):
    return point_cloud(tmp_path_factory.mktemp("data") / "blobs.npy")


def test_train_sample_and_eval_meanflow_at_one_step(cli, blobs, tmp_path):
    out = tmp_path / "mf1"
    code, _, err = cli("train", "--data", blobs, "--objective", "meanflow", "--out", out, *TINY)
    assert code == 0, err
    card = Checkpoint(out).card
    assert card.objective["name"] == "meanflow" and card.model["interval"] is True
    assert card.sample == {"solver": "euler", "steps": 1}

    # sample: one step by default, x0 + u(x0, r=0, t=1) in the data's units
    code, stdout, err = cli("sample", "--ckpt", out, "--n", "200", "--seed", "3",
                            "--out", tmp_path / "s.npy")
    assert code == 0, err
    assert "1 step, 1 NFE" in " ".join(stdout.split())
    got = np.load(tmp_path / "s.npy", allow_pickle=False)
    net = Checkpoint(out).load_model()
    x0 = noise(200, (2,), 3, "sample-noise")
    with torch.no_grad():
        direct = x0 + net(x0, torch.ones(200), r=torch.zeros(200))
    raw = Normalization(**card.normalization).to_raw(direct).numpy()
    assert np.allclose(got, raw, atol=1e-5)

    # eval: the 1-step row is the model's one interval step, scored by W2
    code, _, err = cli("eval", "--ckpt", out, "--steps", "1,2", "--n", "200", "--seeds", "1",
                       "--no-adaptive", "--path-steps", "8", "--out", tmp_path / "ev.json")
    assert code == 0, err
    ev = json.loads((tmp_path / "ev.json").read_text())
    one = ev["quality"]["1"]
    assert one["nfe"] == 1
    ref = reference_data(load_dataset(card.data, "test"), 200, 0)
    expect = quality(sample_steps(net, noise(200, (2,), 0)).x, ref)["w2"]
    assert one["w2"] == pytest.approx(expect, rel=1e-5)
    assert ev["quality"]["2"]["nfe"] == 2 and ev["quality"]["2"]["w2"] != one["w2"]


def test_reflow_meanflow_drops_exactly_ten_percent_of_pairs(cli, blobs, tmp_path):
    teacher = tiny_checkpoint(tmp_path / "rf1", blobs)
    pairs = small_pairs(teacher, tmp_path / "pairs", n=1000, shard_size=300)
    out = tmp_path / "mf2"
    code, _, err = cli("reflow", "--pairs", pairs, "--objective", "meanflow", "--pair-drop",
                       "0.1", "--out", out, *[a for a in TINY if a not in ("--hidden", "32",
                                                                             "--depth", "2")])
    assert code == 0, err
    card = Checkpoint(out).card
    assert card.round == 2 and card.model == {**Checkpoint(teacher).card.model, "interval": True}
    filt = card.parent["pair_filter"]
    assert (filt["dropped"], filt["kept"], filt["drop"]) == (100, 900, 0.1)

    # the dropped pairs are exactly the 100 farthest, cut once over all 4 shards
    pd = PairsDataset(pairs)
    x0, x1 = pd.head(1000)
    dist = pair_distances(x0, x1)
    order = torch.argsort(dist, descending=True, stable=True)
    assert filt["threshold"] == pytest.approx(float(dist[order[99]]))
    assert filt["max_kept"] == pytest.approx(float(dist[order[100]]))
    assert filt["max_kept"] <= filt["threshold"]
    far = {tuple(x0[i].tolist()) for i in order[:100].tolist()}
    for seed, window in ((0, 4), (7, 1)):   # any seed or window: the same 900 pairs per epoch
        src = StoredPairs(pd, seed, window=window, drop=0.1)
        assert src.n == 900 and src.filter == filt
        a, _ = src.batch(0, 900)
        seen = {tuple(r.tolist()) for r in a}
        assert len(seen) == 900 and not (seen & far)
        b, _ = src.batch(1, 900)
        assert {tuple(r.tolist()) for r in b} == seen


def test_a_meanflow_student_starts_as_one_euler_step_of_its_flow_teacher(blobs, tmp_path):
    """reflow --objective meanflow from a flow teacher: the interval input starts at zero, so
    before training u(x, r, t) = v(x, r) for every t."""
    teacher = Checkpoint(tiny_checkpoint(tmp_path / "rf1", blobs))
    v = teacher.load_model()
    cfg = {**teacher.card.model, "interval": True}
    torch.manual_seed(0)   # init of a throwaway network only; every weight is overwritten
    u = load_into_interval(build_model(cfg), v.state_dict())
    x = torch.randn(16, 2, generator=torch.Generator().manual_seed(1))
    r, t = torch.full((16,), 0.25), torch.linspace(0.25, 1.0, 16)
    with torch.no_grad():
        assert torch.allclose(u(x, t, r=r), v(x, r), atol=1e-6)
        assert torch.allclose(u(x, t), v(x, t), atol=1e-6)     # no r: instantaneous at t


@pytest.mark.parametrize("shape", [(2,), (1, 8, 8)])
def test_interval_flag_is_additive(shape):
    """Configs without "interval" build exactly the network they always did (same parameter
    names, refusing r=); with it, r changes the output once the gap weights are non-zero."""
    plain_cfg = default_model_config(shape)
    assert "interval" not in plain_cfg
    assert default_model_config(shape, "meanflow") == {**plain_cfg, "interval": True}
    torch.manual_seed(0)
    plain = build_model(plain_cfg)
    torch.manual_seed(0)
    mf = build_model({**plain_cfg, "interval": True})
    extra = set(mf.state_dict()) - set(plain.state_dict())
    assert extra and all(k.startswith(("gap.", "gap_mlp.")) for k in extra)
    assert set(plain.state_dict()) <= set(mf.state_dict())
    x, t = torch.randn(4, *shape), torch.rand(4)
    with pytest.raises(UserError, match="interval"):
        plain(x, t, r=t)
    with torch.no_grad():
        for p in mf.parameters():
            p.add_(0.05 * torch.randn_like(p))
        assert not torch.allclose(mf(x, t, r=t * 0.5), mf(x, t, r=t))


def test_pair_drop_is_refused_for_fresh_pairs(blobs, tmp_path):
    with pytest.raises(UserError, match="pair_drop"):
        stages.train(tmp_path / "x", str(blobs), model=TINY_MODEL,
                     options=TrainConfig(train_steps=2, batch_size=8, pair_drop=0.1), evaluate=False)


def test_pipeline_with_meanflow_compares_it_beside_the_rounds(tmp_path, cli):
    """`rectflow run` with with_meanflow: MeanFlow from scratch (mf1) at the total training
    steps of rf1 + rf2 + distill, and on round-2 pairs (mf2) at the student's, in one table."""
    cfg = tmp_path / "tiny.toml"
    cfg.write_text("[train]\ntrain_steps = 30\nbatch_size = 256\n[couple]\nn = 1024\nsteps = 4\n"
                   "[reflow]\ntrain_steps = 20\nbatch_size = 256\n[distill]\ntrain_steps = 10\n"
                   "batch_size = 256\n[compare]\nn = 256\nsteps = [1, 2]\nseeds = 2\n"
                   "path_steps = 8\nadaptive = false\n")
    code, _, err = cli("run", "--preset", "moons-meanflow", "--config", cfg,
                       "--out", tmp_path / "run")
    assert code == 0, err
    run = tmp_path / "run"
    mf1, mf2 = (json.loads((run / m / "config.json").read_text()) for m in ("mf1", "mf2"))
    assert mf1["objective"]["name"] == "meanflow" and mf1["train"]["train_steps"] == 30 + 20 + 10
    assert mf2["objective"]["name"] == "meanflow" and mf2["train"]["train_steps"] == 10
    assert mf2["parent"]["pairs"] == "../pairs2" and mf1["sample"]["steps"] == 1
    rows = json.loads((run / "compare" / "compare.json").read_text())["rows"]
    assert {r["name"] for r in rows} == {"rf1", "rf2", "rf3", "distill", "mf1", "mf2"}
