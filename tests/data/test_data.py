import numpy as np
import pytest
import torch

from rectflow.data import data_spec, load_dataset
from rectflow.data.toy import TOY
from rectflow.errors import DataError


def g(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("name", sorted(TOY))
def test_toy_targets_have_shape_and_are_seeded(name):
    ds = load_dataset(data_spec(name))
    x = ds.sample(5000, g())
    assert x.shape == (5000, 2) and x.dtype == torch.float32
    assert torch.isfinite(x).all()
    assert torch.equal(x, ds.sample(5000, g()))
    assert not torch.equal(x, ds.sample(5000, g(1)))
    assert x.abs().max() < 8


def test_moons_is_standardised():
    x = load_dataset({"name": "moons"}).sample(400_000, g()).double()
    assert torch.allclose(x.mean(0), torch.zeros(2, dtype=torch.float64), atol=0.01)
    assert torch.allclose(x.std(0), torch.ones(2, dtype=torch.float64), atol=0.01)


def test_eight_gaussians_sit_on_radius_4():
    x = load_dataset({"name": "8gaussians"}).sample(20_000, g())
    r = x.norm(dim=1)
    assert abs(r.mean() - 4.0) < 0.1
    angles = torch.atan2(x[:, 1], x[:, 0]) / (np.pi / 4)
    assert (angles - angles.round()).abs().mean() < 0.15   # clustered on the 8 directions


def test_checkerboard_fills_dark_cells_of_the_board():
    x = load_dataset({"name": "checkerboard"}).sample(20_000, g())
    assert x.min() >= -4 and x.max() <= 4
    cell = torch.floor((x + 4) / 2).long()
    assert ((cell[:, 0] + cell[:, 1]) % 2 == 0).all()
    assert len({tuple(c) for c in cell.tolist()}) == 8


def test_digits_are_images_in_minus_one_one():
    ds = load_dataset(data_spec("digits"))
    assert ds.is_image and ds.shape == (1, 8, 8)
    x = ds.take(torch.arange(len(ds)))
    assert x.min() >= -1 and x.max() <= 1 and x.min() < -0.99 and x.max() > 0.99
    raw = ds.to_raw(x)
    assert raw.min() >= 0 and raw.max() <= 16


def test_point_cloud_files_are_standardised_and_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    arr = rng.normal(5.0, 3.0, size=(500, 3)).astype(np.float32)
    np.save(tmp_path / "a.npy", arr)
    np.savez(tmp_path / "b.npz", x=arr)
    from safetensors.numpy import save_file
    save_file({"data": arr}, str(tmp_path / "c.safetensors"))
    for f in ("a.npy", "b.npz", "c.safetensors"):
        spec = data_spec(str(tmp_path / f))
        ds, held = load_dataset(spec, "train"), load_dataset(spec, "test")
        assert ds.shape == (3,) and len(ds) == 450 and len(held) == 50   # 10 % held out
        x = torch.cat([ds.take(torch.arange(450)), held.take(torch.arange(50))])
        assert torch.allclose(x.mean(0), torch.zeros(3), atol=1e-4)
        raw = ds.to_raw(x).numpy()
        # the two splits partition the file's rows: every row once, none in both
        order = np.lexsort(raw.T)
        assert np.allclose(raw[order], arr[np.lexsort(arr.T)], atol=1e-4)


def test_point_cloud_with_nan_is_refused(tmp_path):
    arr = np.zeros((10, 2), dtype=np.float32)
    arr[3, 1] = np.nan
    np.save(tmp_path / "nan.npy", arr)
    with pytest.raises(DataError, match="row 3"):
        load_dataset(data_spec(str(tmp_path / "nan.npy")))


def test_pickled_npy_is_refused(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DataError):
        load_dataset(data_spec(str(tmp_path / "obj.npy")))


@pytest.mark.parametrize("bad,msg", [("nosuch", "unknown dataset"), ("mnist", "--data-root"),
                                     ("missing.npy", "does not exist")])
def test_bad_data_names_fail_clearly(bad, msg):
    with pytest.raises(DataError, match=msg):
        data_spec(bad)
