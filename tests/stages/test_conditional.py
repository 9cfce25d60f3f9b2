"""Class-conditional flows and classifier-free guidance through train, couple, reflow, sample.

One conditional 8gaussians model is trained once (a few seconds); its labels are the mixture
components, so where a sample lands says which class it was generated for.
"""
from __future__ import annotations

import json
import math
import subprocess

import numpy as np
import pytest
import torch

from rectflow.stages import train as stages
from rectflow.records.checkpoint import Checkpoint
from rectflow.core.guidance import Guided
from rectflow.stages.sample import pick_classes
from rectflow.data import data_spec, load_dataset
from rectflow.data.pairs import PairsDataset, StoredPairs
from rectflow.core.seeding import noise
from rectflow.data.labels import class_names, labels
from rectflow.options import CoupleConfig, TrainConfig
from rectflow.records import RunCard
from rectflow.core.solvers import solve
from support import subprocess_env, torchrun_cmd

CENTRES = 4.0 * torch.tensor([[math.cos(k * math.pi / 4), math.sin(k * math.pi / 4)]
                              for k in range(8)])
COUPLE_ARGS = ["-n", "700", "--solver", "rk4", "--steps", "4", "--shard-size", "150",
               "--eval-chunk", "64", "--seed", "5", "--guidance", "1.5", "--ot-subsample", "50"]


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("conditional")


@pytest.fixture(scope="module")
def teacher(work):
    cfg = TrainConfig(train_steps=300, batch_size=256, lr=3e-3, warmup=0, save_every=300,
                      log_every=100, conditional=True)
    return stages.train(work / "rf1", "8gaussians", model={"hidden": 64, "depth": 2},
                        options=cfg, evaluate=False).path


def _guided(path, w: float = 1.0) -> Guided:
    ck = Checkpoint(path)
    return Guided(ck.objective(), ck.load_model(), len(ck.card.classes), w)


def _nearest(x: torch.Tensor) -> torch.Tensor:
    return torch.cdist(x, CENTRES).argmin(1)


def test_card_records_classes_and_old_cards_read_unconditional(teacher, tmp_path):
    card = Checkpoint(teacher).card
    assert card.conditional and card.classes == [str(k) for k in range(8)]
    assert card.model["num_classes"] == 8
    d = json.loads((teacher / "config.json").read_text())
    for k in ("conditional", "classes"):
        d.pop(k)
    (tmp_path / "config.json").write_text(json.dumps(d))
    old = RunCard.read(tmp_path / "config.json")
    assert old.conditional is False and old.classes is None


def test_permuted_labels_give_permuted_samples(teacher):
    """Same noise, labels permuted by a derangement: every sample lands on the component of
    its new label (nearest centre), and class means move with the labels."""
    g = _guided(teacher)
    y = torch.arange(8).repeat_interleave(50)
    perm = torch.tensor([3, 7, 0, 5, 1, 2, 4, 6])   # no class maps to itself
    x0 = noise(len(y), (2,), 0)
    with torch.no_grad():
        a = solve(g, x0, steps=20, extras={"y": y}).x
        b = solve(g, x0, steps=20, extras={"y": perm[y]}).x
    assert (_nearest(a) == y).float().mean() > 0.9
    assert (_nearest(b) == perm[y]).float().mean() > 0.9
    for c in range(8):
        assert torch.linalg.norm(b[perm[y] == perm[c]].mean(0) - CENTRES[perm[c]]) < 1.0


def test_guidance_zero_is_the_unconditional_path_exactly(teacher):
    g0 = _guided(teacher, 0.0)
    ck = Checkpoint(teacher)
    model, obj = ck.load_model(), ck.objective()
    y = torch.arange(8).repeat(40)
    x0 = noise(len(y), (2,), 1)
    with torch.no_grad():
        guided = solve(g0, x0, steps=10, extras={"y": y}).x
        shuffled = solve(g0, x0, steps=10, extras={"y": y.flip(0)}).x
        null = solve(obj.velocity(model, y=torch.full_like(y, 8)), x0, steps=10).x
        none = solve(lambda x, t: model(x, t), x0, steps=10).x
    assert torch.equal(guided, null) and torch.equal(guided, none)
    assert torch.equal(guided, shuffled)   # labels have no effect at w = 0
    with torch.no_grad():   # while at w = 1 they do
        assert not torch.equal(solve(_guided(teacher, 1.0), x0, steps=10, extras={"y": y}).x, guided)


def test_labels_survive_a_round_trip_through_pairs(teacher, work):
    out = work / "pairs"
    m = stages.couple(teacher, out, CoupleConfig(
        n=700, solver="rk4", steps=4, shard_size=150, eval_chunk=64, seed=5, guidance=1.5,
        ot_subsample=50))
    assert m.classes == [str(k) for k in range(8)] and m.guidance == 1.5
    pd = PairsDataset(out)
    shards = [pd.read_shard(i) for i in range(len(pd.shards))]
    y = torch.cat([s["y"] for s in shards])
    x1 = torch.cat([s["x1"] for s in shards])
    assert y.shape == (700,) and len(torch.unique(y)) == 8
    assert (_nearest(x1) == y).float().mean() > 0.9   # each endpoint is of its label's class
    # reflow's source hands out the same (x0, y) pairs, shuffled
    x0 = torch.cat([s["x0"] for s in shards])
    bx0, _, cond = StoredPairs(pd, seed=0).batch(0, 700)
    rows = torch.cdist(bx0, x0).argmin(1)
    assert torch.equal(x0[rows], bx0) and torch.equal(y[rows], cond["y"])
    rf2 = stages.reflow(out, work / "rf2", options={"train_steps": 20, "batch_size": 128,
                                                     "save_every": 20}, evaluate=False)
    assert rf2.card.conditional and rf2.card.parent["guidance"] == 1.5


def test_two_process_couple_with_labels_is_byte_identical(teacher, work, tmp_path):
    ref = work / "pairs-ref"
    stages.couple(teacher, ref, CoupleConfig(
        n=700, solver="rk4", steps=4, shard_size=150, eval_chunk=64, seed=5, guidance=1.5,
        ot_subsample=50, batch_size=64))
    out = tmp_path / "pairs-2p"
    r = subprocess.run(torchrun_cmd("couple", "--ckpt", teacher, "--out", out,
                                    "--batch-size", "256", *COUPLE_ARGS),
                       env=subprocess_env(), capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-2000:]
    names = sorted(p.name for p in ref.glob("pairs-*.safetensors"))
    assert len(names) == 5
    for name in names:
        assert (ref / name).read_bytes() == (out / name).read_bytes(), name
    assert json.loads((out / "manifest.json").read_text())["guidance"] == 1.5


def test_sample_by_class_names_rows(teacher, tmp_path):
    r = stages.sample(teacher, tmp_path / "s.npy", n=30, steps=10, classes=["2", "6"])
    x, y = np.load(r.samples), np.load(r.labels)
    assert list(y) == [2] * 15 + [6] * 15
    assert (_nearest(torch.from_numpy(x)).numpy() == y).mean() > 0.9
    card = Checkpoint(teacher).card
    assert pick_classes(card, "all") == list(range(8))
    with pytest.raises(Exception, match="not one of"):
        pick_classes(card, ["9"])


def test_labels_of_files_and_image_folders_follow_their_rows(tmp_path):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 200) * 7 + 1   # labels 1, 8, 15 -> classes "1", "15", "8"
    np.savez(tmp_path / "pts.npz", x=np.stack([y, -y], 1).astype(np.float32), y=y)
    spec = data_spec(str(tmp_path / "pts.npz"))
    names = class_names(spec)
    for split in ("train", "test"):
        ds, lab = load_dataset(spec, split), labels(spec, split)
        raw = ds.to_raw(ds.take(torch.arange(len(ds))))[:, 0].round().long()
        assert [names[i] for i in lab] == [str(int(v)) for v in raw]
    from PIL import Image
    for cls, value in (("cat", 40), ("dog", 200)):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(np.full((8, 8), value + i, np.uint8)).save(
                tmp_path / "imgs" / cls / f"{i}.png")
    spec = data_spec(str(tmp_path / "imgs"), resolution=8, channels=1)
    assert class_names(spec) == ["cat", "dog"]
    ds, lab = load_dataset(spec, "train"), labels(spec, "train")
    bright = ds.take(torch.arange(len(ds))).mean((1, 2, 3)) > 0
    assert torch.equal(bright, lab == 1)
