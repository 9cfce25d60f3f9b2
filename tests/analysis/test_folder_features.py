"""FD for the user's own image folder: a feature network trained on the folder itself.

The test that decides it: on a folder of clear shapes with 40 held-out images, grey blurred
blobs (what a 1-step, undertrained flow draws) and fresh clean shapes must be told apart.
Pixel W2 cannot (it scores the blobs as good as, or better than, the shapes: an average sits
close to every image); the FD of the folder's own network must put the blobs far above the
shapes and the shapes near the floor (held-out vs training images).
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.ndimage import gaussian_filter

from rectflow.analysis import own_features
from rectflow.analysis.features import Extractor, frechet_distance
from rectflow.core.metrics import w2
from rectflow.data import data_spec, load_dataset
from rectflow.io.files import sha256_file
from rectflow.io.remove import written

SIDE = 16
KINDS = ("square", "disc", "bar")


def shapes(n: int, rng: np.random.Generator, kinds=KINDS) -> tuple[np.ndarray, list[str]]:
    """``n`` grey SIDE x SIDE uint8 images of a white square, disc or bar (either way) on black,
    at a random place and size."""
    yy, xx = np.mgrid[0:SIDE, 0:SIDE] + 0.5
    out, names = np.zeros((n, SIDE, SIDE), np.uint8), []
    for i in range(n):
        kind = kinds[rng.integers(len(kinds))]
        cx, cy = rng.uniform(5, 11, 2)
        s = rng.uniform(2.5, 4.5)
        if kind == "square":
            m = (abs(xx - cx) < s) & (abs(yy - cy) < s)
        elif kind == "disc":
            m = (xx - cx) ** 2 + (yy - cy) ** 2 < s * s
        else:
            m = (abs(xx - cx) < 1.2) & (abs(yy - cy) < s + 2)
            m = m.T if rng.integers(2) else m
        out[i] = np.where(m, 255, 0)
        names.append(kind)
    return out, names


def shape_folder(root, n: int = 400, seed: int = 0, classes: bool = False):
    """A folder of ``n`` shape PNGs (one sub-folder per kind when ``classes``)."""
    imgs, names = shapes(n, np.random.default_rng(seed))
    for i, (img, kind) in enumerate(zip(imgs, names)):
        folder = root / kind if classes else root
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(folder / f"{i:04d}.png")
    return root


def model_space(imgs: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(imgs.astype(np.float32) / 127.5 - 1.0)[:, None]


def blobs(n: int, rng: np.random.Generator, mean: torch.Tensor) -> torch.Tensor:
    """Grey blobs: shapes blurred (sigma 2 px, scipy's filter, not the network's own blur) and
    mixed half-way toward the training mean image, as a 1-step undertrained flow draws."""
    x = shapes(n, rng)[0].astype(np.float32) / 127.5 - 1.0
    x = np.stack([gaussian_filter(im, 2.0, mode="nearest") for im in x])
    return 0.5 * torch.from_numpy(x)[:, None] + 0.5 * mean


def distances(spec: dict, root) -> dict:
    net, info = own_features.own_net(spec, root)
    held = load_dataset(spec, "test")
    held = held.take(torch.arange(len(held)))
    train_ds = load_dataset(spec, "train")
    train = train_ds.take(torch.arange(len(train_ds)))
    n = len(held)
    rng = np.random.default_rng(7)
    samples = {"blobs": blobs(n, rng, train.mean(0, keepdim=True)),
               "shapes": model_space(shapes(n, rng)[0]),
               "squares only": model_space(shapes(n, rng, kinds=("square",))[0]),
               "floor": train[torch.randperm(len(train), generator=torch.Generator()
                                             .manual_seed(0))[:n]]}
    e = Extractor(net.features)
    ref = e.stats(held)
    fd = {k: frechet_distance(e.stats(x), ref) for k, x in samples.items()}
    pix = {k: w2(x, held) for k, x in samples.items()}
    return {"fd": fd, "w2": pix, "n": n, "info": info}


@pytest.fixture(scope="module", params=[False, True], ids=["no-classes", "classes"])
def measured(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("shapes")
    folder = shape_folder(tmp / "shapes", classes=request.param)
    return distances(data_spec(str(folder)), tmp / "features") | {"classes": request.param}


def test_folder_fd_separates_blobs_from_shapes_where_pixel_w2_does_not(measured):
    fd, pix, n = measured["fd"], measured["w2"], measured["n"]
    numbers = (f"n={n} held-out; FD blobs {fd['blobs']:.3g}, shapes {fd['shapes']:.3g}, "
               f"floor {fd['floor']:.3g}; pixel W2 blobs {pix['blobs']:.3g}, shapes "
               f"{pix['shapes']:.3g}, floor {pix['floor']:.3g} (ratio "
               f"{pix['blobs'] / pix['shapes']:.2f})")
    assert n == 40, numbers
    # pixel W2 fails: the blobs score about as well as (here better than) the clean shapes
    assert pix["blobs"] / pix["shapes"] < 1.1, numbers
    # FD: the blobs far above the clean shapes, the shapes within the floor's reach
    assert fd["blobs"] > 20 * fd["shapes"], numbers
    assert fd["shapes"] < 3 * fd["floor"], numbers


def test_a_folder_with_classes_also_sees_a_model_that_draws_one_class(measured):
    """The class head makes the features see content: squares only (a third of the kinds) is
    well above the floor. Without classes the degradation task alone does not promise that."""
    fd, info = measured["fd"], measured["info"]
    if measured["classes"]:
        assert info["objective"] == "degradation+classes" and info["label_accuracy"] > 0.9
        assert fd["squares only"] > 3 * fd["floor"], fd
    else:
        assert info["objective"] == "degradation" and info["label_accuracy"] is None
    assert info["test_accuracy"] > 0.9 and info["net"]["feat"] < measured["n"]


def test_the_network_is_seeded_cached_by_content_and_safetensors(tmp_path, monkeypatch):
    monkeypatch.setitem(own_features.TRAIN, "min_steps", 8)   # 2 batches x 12 epochs
    folder = shape_folder(tmp_path / "shapes", n=120)
    spec = data_spec(str(folder))
    state = torch.random.get_rng_state()
    _, info = own_features.own_net(spec, tmp_path / "a")
    assert torch.equal(state, torch.random.get_rng_state())   # the global RNG left alone
    _, again = own_features.own_net(spec, tmp_path / "b")      # trained afresh elsewhere
    assert again["sha256"] == info["sha256"]                    # same seed, same weights
    cache = tmp_path / "a" / own_features.cache_name(
        spec, (1, SIDE, SIDE), info["data_sha256"])
    assert sorted(p.name for p in cache.iterdir()) == [".rectflow-files", "config.json",
                                                       "model.safetensors"]
    assert written(cache / "config.json") and written(cache / "model.safetensors")   # one writer
    record = json.loads((cache / "config.json").read_text())
    assert record["format"] == "rectflow/feature-net" and record["sha256"] == info["sha256"]

    def no_training(*a, **k):
        raise AssertionError("retrained a cached network")
    monkeypatch.setattr(own_features, "train_own_net", no_training)
    _, cached = own_features.own_net(spec, tmp_path / "a")
    assert cached["seconds"] == info["seconds"]
    Image.fromarray(np.full((SIDE, SIDE), 255, np.uint8)).save(folder / "0005.png")
    with pytest.raises(AssertionError, match="retrained"):     # a changed folder retrains
        own_features.own_net(spec, tmp_path / "a")


@pytest.fixture(scope="module")
def folder_model(tmp_path_factory):
    """A model trained for 4 steps on a folder of 120 shapes: (folder, model folder)."""
    from rectflow.stages import train as stages
    from rectflow.training.loop import TrainConfig
    tmp = tmp_path_factory.mktemp("folder-model")
    folder = shape_folder(tmp / "shapes", n=120)
    ck = tmp / "runs" / "rf1"
    stages.train(ck, str(folder), options=TrainConfig(train_steps=4, batch_size=32),
                 evaluate=False)
    return folder, ck


def test_rectflow_eval_on_a_folder_prints_and_records_the_fd(cli, tmp_path, folder_model):
    """`rectflow eval` on a shape folder's model reports FD (a column, the floor, the
    network's line) and eval.json names the network by its sha256; the network is cached
    where the classifiers are (<model's parent>/.features)."""
    folder, ck = folder_model
    out = tmp_path / "eval.json"
    code, stdout, err = cli("eval", "--ckpt", ck, "--steps", "1", "--n", "12", "--seeds", "1",
                            "--path-steps", "4", "--no-adaptive", "--out", out)
    assert code == 0, err
    assert " FD " in stdout and "FD features: network trained on this data's 108" in stdout
    ev = json.loads(out.read_text())
    assert ev["metrics"].keys() == {"w2", "fd"} and "blurred" in ev["metrics"]["fd"]
    assert ev["quality"]["1"]["fd"] > 10 * ev["floors"]["fd"] > 0, ev["quality"]
    cache = ck.parent / ".features" / own_features.cache_name(
        data_spec(str(folder)), (1, SIDE, SIDE), ev["classifier"]["data_sha256"])
    assert ev["args"]["classifier_sha256"] == ev["classifier"]["sha256"] \
        == sha256_file(cache / "model.safetensors")


def test_more_seeds_read_the_folder_network_once(tmp_path, folder_model, monkeypatch):
    from rectflow.analysis.evaluate import EvalConfig, evaluate_checkpoint
    _, ck = folder_model
    calls = []
    real = own_features.own_net
    monkeypatch.setattr(own_features, "own_net", lambda *a, **k: calls.append(1) or real(*a, **k))
    cfg = EvalConfig(steps=(1,), n=12, seeds=2, path_steps=4, adaptive=False)
    ev = evaluate_checkpoint(ck, cfg, out=tmp_path / "e.json")   # the cache eval made
    assert len(calls) == 1 and ev.seeds == [0, 1]
    assert ev.quality["1"]["fd_std"] > 0 and ev.floors["fd_std"] > 0   # two references


@pytest.mark.parametrize("net,word", [({"channels": 1, "side": 100000}, "side"),
                                      ({"channels": 1, "labels": "3"}, "net"),
                                      ({"width": 16}, "channels")])
def test_a_hand_edited_network_record_is_one_line_naming_the_field(tmp_path, net, word):
    from rectflow.errors import CheckpointError
    from rectflow.records.snapshot import FeatureNetCache
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"format": FeatureNetCache.FORMAT, "version": 1,
                                "dataset": "imagefolder", "net": net}))
    with pytest.raises(CheckpointError) as e:
        FeatureNetCache.read(path)
    assert str(path) in str(e.value) and word in str(e.value) and "\n" not in str(e.value)


def test_an_image_array_gets_a_network_too_and_large_images_are_pooled(tmp_path, monkeypatch):
    """Any image data without a shipped classifier: here an RGB .npy of 40 x 40 images (above
    MAX_SIDE, so the network sees them average-pooled)."""
    monkeypatch.setitem(own_features.TRAIN, "min_steps", 4)
    monkeypatch.setitem(own_features.TRAIN, "epochs", 1)
    rng = np.random.default_rng(3)
    path = tmp_path / "rgb.npy"
    np.save(path, rng.integers(0, 256, (40, 3, 40, 40), dtype=np.uint8))
    spec = data_spec(str(path))
    net, info = own_features.feature_net(spec, tmp_path / "features")
    assert info["dataset"] == "file" and info["net"]["side"] == own_features.MAX_SIDE < 40
    assert info["train"]["steps"] == 4 and info["objective"] == "degradation"
    with torch.inference_mode():
        f = net.features(load_dataset(spec, "test").take(torch.arange(4)))
    assert f.shape == (4, own_features.FEAT) and torch.isfinite(f).all()


def test_a_single_held_out_image_is_scored_by_pixel_w2_alone(tmp_path):
    """Twelve images hold one out: no covariance, so no FD (and no network trained for it),
    where an FD would have stopped the evaluation; W2 still scores the samples."""
    from rectflow.analysis.evaluate import EvalConfig, Scorer
    spec = data_spec(str(shape_folder(tmp_path / "shapes", n=12)))
    held = load_dataset(spec, "test")
    assert len(held) == 1
    sc = Scorer(spec, held, held.take(torch.arange(1)), EvalConfig(n=4), tmp_path / "f")
    assert list(sc.info["metrics"]) == ["w2"] and not (tmp_path / "f").exists()
    assert set(sc(torch.zeros(4, 1, SIDE, SIDE))) == {"w2"}
