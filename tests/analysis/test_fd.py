"""Fréchet distance: the clamp to the data range, the sqrtm check, the floor, no global seed."""
from pathlib import Path

import numpy as np
import pytest
import torch

from rectflow.analysis import features
from rectflow.errors import UserError
from rectflow.analysis.features import Extractor, FrechetError, fd_floor, frechet_distance


def flat(x):
    return x.flatten(1)


def images(n, seed, shift=0.0):
    g = torch.Generator().manual_seed(seed)
    return (0.3 * torch.randn(n, 1, 2, 2, generator=g) + shift).clamp(-1, 1)


def test_generated_images_are_clamped_to_the_data_range():
    x = images(200, 0)
    over = x.clone()
    over[:50] *= 3.0                                # overshoots beyond [-1, 1]
    e = Extractor(flat)
    mu, cov = e.stats(over)
    mu_c, cov_c = Extractor(flat, data_range=None).stats(over.clamp(-1, 1))
    assert np.allclose(mu, mu_c) and np.allclose(cov, cov_c)
    assert not np.allclose(Extractor(flat, data_range=None).stats(over)[1], cov)
    assert np.array_equal(e.stats(x)[1], Extractor(flat, data_range=None).stats(x)[1])


def test_sqrtm_with_a_large_imaginary_part_is_refused():
    mu = np.zeros(2)
    good = (mu, np.diag([1.0, 2.0]))
    not_psd = (mu, np.diag([1.0, -1.0]))             # sqrt(S_a S_b) = diag(1, i sqrt 2)
    with pytest.raises(FrechetError, match="imaginary part .* x its trace") as e:
        frechet_distance(good, not_psd)
    assert isinstance(e.value, UserError) and "\n" not in str(e.value)
    # a valid but singular pair passes (its square root is real up to round-off)
    sing = (mu, np.array([[1.0, 1.0], [1.0, 1.0]]))
    assert frechet_distance(sing, sing) == pytest.approx(0.0, abs=1e-6)
    assert frechet_distance(good, (mu + 1, np.diag([1.0, 2.0]))) == pytest.approx(2.0)


def test_fd_floor_is_below_a_shifted_model_and_seeded():
    e = Extractor(flat)
    held, train = images(400, 1), images(1000, 2)
    floor = fd_floor(e, held, train, 300, seed=0, repeats=3)
    assert floor.k == 3 and 0 < floor.mean
    again = fd_floor(e, held, train, 300, seed=0, repeats=3)
    assert again == floor
    shifted = frechet_distance(e.stats(images(300, 3, shift=0.3)), e.stats(held[:300]))
    assert shifted > floor.mean + 10 * floor.std
    with pytest.raises(UserError, match="n=500"):
        fd_floor(e, held, train, 500)
    # a model scored with more samples than the held-out set has: the floor at that count
    # lies below the equal-size one, as the training side's sampling noise falls
    more = fd_floor(e, held, train, 300, seed=0, repeats=3, samples=1000)
    assert more.k == 3 and 0 < more.mean < floor.mean
    with pytest.raises(UserError, match="samples=1001"):
        fd_floor(e, held, train, 300, samples=1001)


def test_classifier_training_leaves_the_global_rng_alone(monkeypatch):
    monkeypatch.setitem(features.TRAIN, "digits", {"width": 4, "epochs": 1, "batch_size": 32,
                                                   "lr": 3e-3})
    g = torch.Generator().manual_seed(0)
    tiny = (torch.rand(64, 1, 8, 8, generator=g) * 2 - 1, torch.arange(64) % 10)
    monkeypatch.setattr(features, "labelled", lambda spec, split: tiny)
    state = torch.random.get_rng_state()
    net, _ = features.train_classifier({"name": "digits"})
    assert torch.equal(state, torch.random.get_rng_state())
    torch.manual_seed(999)          # a different global state gives the same classifier
    net2, _ = features.train_classifier({"name": "digits"})
    for (k, a), b in zip(net.state_dict().items(), net2.state_dict().values()):
        assert torch.equal(a, b), k


def test_a_resized_set_gets_a_classifier_of_its_own_size(tmp_path, monkeypatch):
    """digits read at 16 px must not be scored by the classifier cached for 8 px digits."""
    from rectflow.analysis import features
    trained = []

    def fake_train(spec, callback=None):
        trained.append(spec)
        return features.Classifier(1, width=4), {"dataset": "digits",
                                                 "net": {"channels": 1, "width": 4, "feat": 64}}
    monkeypatch.setattr(features, "train_classifier", fake_train)
    _, native = features.classifier({"name": "digits"}, tmp_path)
    _, resized = features.classifier({"name": "digits", "resolution": 16, "channels": 1},
                                     tmp_path)
    assert len(trained) == 2 and trained[1]["resolution"] == 16
    assert native["path"] != resized["path"]
    assert Path(resized["path"]).name == "digits-16px-1ch"
    features.classifier({"name": "digits", "resolution": 16, "channels": 1}, tmp_path)
    assert len(trained) == 2   # cached under its own name
