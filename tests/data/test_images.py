import gzip

import numpy as np
import pytest
import torch
from PIL import Image

from rectflow.data.images import (load_cifar10, load_digits, load_image_folder, load_mnist,
                                  save_image_grid)
from rectflow.errors import DataError


# ---------------------------------------------------------------------------------- digits

def test_digits_splits():
    train, test = load_digits("train"), load_digits("test")
    assert train.data.shape == (1500, 1, 8, 8) and test.data.shape == (297, 1, 8, 8)
    assert train.data.dtype == torch.float32 and train.is_image and train.name == "digits"
    for ds in (train, test):
        assert ds.data.min() >= -1 and ds.data.max() <= 1
        assert ds.data.min() == -1 and ds.data.max() == 1
    raw = train.to_raw(train.data)
    assert raw.min() == 0 and raw.max() == 16
    assert torch.allclose(raw, raw.round())  # raw digit pixels are integers 0..16
    rows_train = {tuple(r.tolist()) for r in train.data.flatten(1)}
    rows_test = [tuple(r.tolist()) for r in test.data.flatten(1)]
    assert not any(r in rows_train for r in rows_test)  # no test image also appears in train
    assert torch.equal(load_digits("train").data, train.data)  # deterministic
    assert train.take(torch.tensor([0, 1])).shape == (2, 1, 8, 8)


def test_digits_bad_split():
    with pytest.raises(ValueError, match="split"):
        load_digits("val")


# ----------------------------------------------------------------------------------- MNIST

def _idx_bytes(images: np.ndarray) -> bytes:
    n, rows, cols = images.shape
    return np.array([2051, n, rows, cols], dtype=">u4").tobytes() + images.astype(np.uint8).tobytes()


def _fake_mnist(n=5, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, 28, 28), dtype=np.uint8)


def test_mnist_idx_round_trip(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    train_imgs, test_imgs = _fake_mnist(5, 0), _fake_mnist(3, 1)
    (raw / "train-images-idx3-ubyte").write_bytes(_idx_bytes(train_imgs))
    (raw / "t10k-images-idx3-ubyte").write_bytes(_idx_bytes(test_imgs))
    ds = load_mnist(tmp_path, "train")
    assert ds.name == "mnist" and ds.is_image
    assert ds.data.shape == (5, 1, 28, 28) and ds.data.dtype == torch.uint8
    assert np.array_equal(ds.data[:, 0].numpy(), train_imgs)
    x = ds.take(torch.arange(5))
    assert x.dtype == torch.float32 and x.min() >= -1 and x.max() <= 1
    assert torch.allclose(ds.to_raw(x), torch.from_numpy(train_imgs).float()[:, None], atol=1e-4)
    test = load_mnist(str(tmp_path), "test")
    assert np.array_equal(test.data[:, 0].numpy(), test_imgs)


def test_mnist_gz_variant(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    imgs = _fake_mnist(4, 2)
    (raw / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(imgs)))
    ds = load_mnist(tmp_path, "test")
    assert np.array_equal(ds.data[:, 0].numpy(), imgs)


def test_mnist_missing_and_corrupt(tmp_path):
    with pytest.raises(DataError, match="--download") as info:
        load_mnist(tmp_path / "nowhere")
    assert "train-images-idx3-ubyte" in str(info.value)
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    (raw / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x01" + bytes(12))
    with pytest.raises(DataError, match="magic number 2049"):
        load_mnist(tmp_path)
    (raw / "train-images-idx3-ubyte").write_bytes(_idx_bytes(_fake_mnist(2))[:-10])
    with pytest.raises(DataError, match="truncated"):
        load_mnist(tmp_path)


# -------------------------------------------------------------------------------- CIFAR-10

def _cifar_batch(images: np.ndarray, labels: np.ndarray) -> bytes:
    records = np.concatenate([labels[:, None].astype(np.uint8), images.reshape(len(images), -1)], 1)
    return records.astype(np.uint8).tobytes()


def test_cifar10_binary(tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    rng = np.random.default_rng(0)
    batches = [rng.integers(0, 256, size=(2, 3, 32, 32), dtype=np.uint8) for _ in range(5)]
    for i, b in enumerate(batches, 1):
        (folder / f"data_batch_{i}.bin").write_bytes(_cifar_batch(b, np.full(2, 255 - i)))
    test_imgs = rng.integers(0, 256, size=(3, 3, 32, 32), dtype=np.uint8)
    (folder / "test_batch.bin").write_bytes(_cifar_batch(test_imgs, np.arange(3)))
    ds = load_cifar10(tmp_path, "train")
    assert ds.name == "cifar10" and ds.is_image
    assert ds.data.shape == (10, 3, 32, 32) and ds.data.dtype == torch.uint8
    assert np.array_equal(ds.data.numpy(), np.concatenate(batches))  # label bytes dropped
    test = load_cifar10(tmp_path, "test")
    assert np.array_equal(test.data.numpy(), test_imgs)
    (folder / "test_batch.bin").write_bytes(b"\x00" * 3000)
    with pytest.raises(DataError, match="3073"):
        load_cifar10(tmp_path, "test")
    (folder / "data_batch_3.bin").unlink()
    with pytest.raises(DataError, match="data_batch_3.bin"):
        load_cifar10(tmp_path, "train")


def test_cifar10_refuses_pickle_distribution(tmp_path):
    (tmp_path / "cifar-10-batches-py").mkdir()
    (tmp_path / "cifar-10-batches-py" / "data_batch_1").write_bytes(b"not read")
    with pytest.raises(DataError, match="pickle") as info:
        load_cifar10(tmp_path)
    assert "cifar-10-binary.tar.gz" in str(info.value)


def test_cifar10_missing(tmp_path):
    with pytest.raises(DataError, match="cifar-10-batches-bin"):
        load_cifar10(tmp_path)


# ---------------------------------------------------------------------------- image folder

def test_image_folder(tmp_path):
    (tmp_path / "sub").mkdir()
    Image.new("RGB", (40, 20), (255, 0, 0)).save(tmp_path / "b.png")
    Image.new("RGB", (16, 16), (0, 0, 255)).save(tmp_path / "sub" / "c.jpg")
    Image.new("L", (10, 30), 128).save(tmp_path / "a.BMP")
    (tmp_path / "notes.txt").write_text("ignored")
    ds = load_image_folder(tmp_path, resolution=8)
    assert ds.name == "imagefolder" and ds.is_image
    assert ds.data.shape == (3, 3, 8, 8) and ds.data.dtype == torch.uint8
    # sorted order: a.BMP (gray), b.png (red), sub/c.jpg (blue)
    assert torch.all(ds.data[0] == 128)
    assert torch.all(ds.data[1, 0] == 255) and torch.all(ds.data[1, 1:] == 0)
    assert ds.data[2, 2].float().mean() > 200 and ds.data[2, 0].float().mean() < 50
    gray = load_image_folder(tmp_path, resolution=4, channels=1)
    assert gray.data.shape == (3, 1, 4, 4)


def test_image_folder_centre_crop(tmp_path):
    img = np.zeros((10, 30, 3), dtype=np.uint8)
    img[:, 10:20] = 255  # white centre square, black sides
    Image.fromarray(img).save(tmp_path / "wide.png")
    ds = load_image_folder(tmp_path, resolution=10)
    assert torch.all(ds.data == 255)  # the crop keeps only the centre 10x10


def test_image_folder_errors(tmp_path):
    with pytest.raises(DataError, match="no images"):
        load_image_folder(tmp_path)
    with pytest.raises(DataError, match="does not exist"):
        load_image_folder(tmp_path / "missing")
    (tmp_path / "broken.png").write_bytes(b"definitely not a png")
    with pytest.raises(DataError, match="broken.png"):
        load_image_folder(tmp_path)


# ------------------------------------------------------------------------------------ grid

def test_save_image_grid(tmp_path):
    x = torch.linspace(-1.5, 1.5, 6 * 64).reshape(6, 1, 8, 8)  # out-of-range values get clamped
    out = save_image_grid(x, tmp_path / "grid" / "samples.png")
    assert out.is_file()
    # no temp file left; the loose picture is listed in its folder's record of what rectflow wrote
    assert sorted(p.name for p in out.parent.iterdir()) == [".rectflow-files", "samples.png"]
    assert (out.parent / ".rectflow-files").read_text().split() == ["samples.png"]
    with Image.open(out) as im:
        assert im.format == "PNG"
        arr = np.asarray(im.convert("RGB"))
    # 6 tiles -> 3 per row, 2 rows; 8 px tiles upscaled 4x to 32 px, 2 px padding
    assert arr.shape == (2 + 2 * 34, 2 + 3 * 34, 3)
    assert arr.min() == 0 and arr.max() == 255
    assert len(np.unique(arr)) > 10
    save_image_grid(torch.rand(4, 3, 32, 32) * 2 - 1, out, nrow=4)
    with Image.open(out) as im:
        assert im.size == (2 + 4 * 34, 2 + 34)


# ------------------------------------------------------------------ shapes from the data

def _pngs(folder, sizes, mode="L", seed=0):
    """One PNG per entry of ``sizes`` (w, h), a bright disc on a dark background."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i, (w, h) in enumerate(sizes):
        yy, xx = np.mgrid[0:h, 0:w]
        cx, cy = rng.uniform(0.3, 0.7, 2) * (w, h)
        disc = ((xx - cx) ** 2 + (yy - cy) ** 2 < (min(w, h) / 4) ** 2) * 220 + 20
        px = disc.astype(np.uint8)
        img = Image.fromarray(px if mode == "L" else np.stack([px, px // 2, 255 - px], -1))
        img.save(folder / f"{i:03d}.png")
    return folder


def test_folder_resolution_and_channels_come_from_the_images(tmp_path):
    from rectflow.data import data_spec, load_dataset
    notes = []
    spec = data_spec(str(_pngs(tmp_path / "grey", [(12, 12)] * 6)), note=notes.append)
    assert (spec["resolution"], spec["channels"], notes) == (12, 1, [])
    assert load_dataset(spec).shape == (1, 12, 12)
    spec = data_spec(str(_pngs(tmp_path / "rgb", [(10, 10)] * 4, "RGB")), note=notes.append)
    assert (spec["resolution"], spec["channels"]) == (10, 3)


def test_mixed_sizes_take_the_most_common_and_say_so(tmp_path):
    from rectflow.data import data_spec, load_dataset
    folder = _pngs(tmp_path / "mixed", [(10, 10)] * 3 + [(14, 20)] * 2)
    notes = []
    spec = data_spec(str(folder), note=notes.append)
    assert spec["resolution"] == 10 and len(notes) == 1
    assert "2 sizes" in notes[0] and "10x10" in notes[0] and "3 of 5" in notes[0]
    assert load_dataset(spec, "train").shape == (1, 10, 10)


def test_a_given_resolution_or_channels_resizes_and_says_so(tmp_path):
    from rectflow.data import data_spec, load_dataset
    folder = _pngs(tmp_path / "pics", [(16, 16)] * 5)
    notes = []
    spec = data_spec(str(folder), resolution=8, channels=3, note=notes.append)
    assert (spec["resolution"], spec["channels"]) == (8, 3)
    assert any("16x16" in n and "8x8" in n for n in notes) and any("RGB" in n for n in notes)
    ds = load_dataset(spec, "train")
    assert ds.shape == (3, 8, 8) and ds.data.dtype == torch.uint8
    x = ds.take(torch.arange(len(ds)))
    assert x.min() >= -1 and x.max() <= 1 and x.max() > 0.5   # the disc survives the resize


def test_named_sets_resize_only_when_asked(tmp_path):
    from rectflow.data import data_spec, load_dataset
    notes = []
    assert data_spec("digits", note=notes.append) == {"name": "digits"} and notes == []
    spec = data_spec("digits", resolution=16, note=notes.append)
    assert spec == {"name": "digits", "resolution": 16, "channels": 1} and len(notes) == 1
    ds = load_dataset(spec, "test")
    assert ds.shape == (1, 16, 16) and ds.data.min() >= -1 and ds.data.max() <= 1


@pytest.mark.parametrize("suffix,dtype", [(".npy", np.uint8), (".npz", np.float32)])
def test_image_arrays_from_files(tmp_path, suffix, dtype):
    from rectflow.data import data_spec, load_dataset
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (20, 3, 6, 6)).astype(dtype)
    if dtype == np.float32:
        arr /= 255.0   # [0, 1]
    path = tmp_path / f"imgs{suffix}"
    np.save(path, arr) if suffix == ".npy" else np.savez(path, x=arr)
    spec = data_spec(str(path))
    assert (spec["name"], spec["resolution"], spec["channels"]) == ("file", 6, 3)
    ds = load_dataset(spec, "train")
    assert ds.is_image and ds.shape == (3, 6, 6) and len(ds) == 18
    x = ds.take(torch.arange(len(ds)))
    assert x.min() >= -1 and x.max() <= 1
    back = ds.to_raw(x).numpy()   # the file's own units
    assert back.min() >= 0 and back.max() <= (255 if dtype == np.uint8 else 1.0 + 1e-6)
    with pytest.raises(DataError, match="square"):
        np.save(tmp_path / "wide.npy", np.zeros((4, 1, 6, 8), np.uint8))
        load_dataset({"name": "file", "path": str(tmp_path / "wide.npy")})


def test_unet_recipe_builds_for_any_square_size():
    from rectflow.models import build_model, default_model_config
    for res in (3, 8, 10, 15, 16, 24, 28):
        cfg = default_model_config((1, res, res))
        y = build_model(cfg)(torch.zeros(2, 1, res, res), torch.rand(2))
        assert y.shape == (2, 1, res, res)
    assert default_model_config((1, 8, 8))["width"] < default_model_config((3, 32, 32))["width"]


# ------------------------------------------------------------------ the image recipe

def test_image_defaults_sit_between_the_user_and_the_stage():
    from rectflow.options import KIND_DEFAULTS, train_config
    image = KIND_DEFAULTS["image"]["train"]["batch_size"]
    assert train_config("train", kind="image").batch_size == image != train_config().batch_size
    assert train_config("train", {"batch_size": 64}, kind="image").batch_size == 64
    assert train_config("distill", kind="image").lr == train_config("distill").lr  # stage's own


def test_a_default_batch_is_cut_to_memory_and_a_given_one_refused(monkeypatch):
    from rectflow.machine import batchfit
    from rectflow.errors import ResourceError
    from rectflow.models import build_model, default_model_config
    shape = (1, 8, 8)
    net = build_model(default_model_config(shape))
    per_sample, fixed = batchfit.step_memory(net, shape)
    assert per_sample > 4 * 64 and fixed > 4 * sum(p.numel() for p in net.parameters())
    free = int((fixed + 300 * per_sample) / batchfit.SHARE)   # room for 300 samples
    monkeypatch.setattr(batchfit, "available_memory", lambda device=None: free)
    bs, note = batchfit.fit_batch(net, shape, 2048)
    assert bs == 256 and "not the default 2048" in note
    assert batchfit.fit_batch(net, shape, 128)[0] == 128
    with pytest.raises(ResourceError, match="batch_size 2048 needs"):
        batchfit.fit_batch(net, shape, 2048, given=True)


def test_only_whole_numbers_in_0_255_are_read_as_8_bit_pixels(tmp_path):
    from rectflow.data import load_dataset
    from rectflow.data.base import Normalization
    rng = np.random.default_rng(0)
    whole = rng.integers(0, 256, (8, 1, 4, 4)).astype(np.float32)
    frac = whole * 0.8 + 0.25   # fractional values in 0.25..204.25
    for name, arr, pixels in (("whole", whole, True), ("frac", frac, False)):
        np.save(tmp_path / f"{name}.npy", arr)
        ds = load_dataset({"name": "file", "path": str(tmp_path / f"{name}.npy")})
        assert (ds.normalization == Normalization(127.5, 127.5)) == pixels, name
        back = ds.to_raw(ds.take(torch.arange(len(ds))))
        assert float(back.min()) >= float(arr.min()) - 1e-3
