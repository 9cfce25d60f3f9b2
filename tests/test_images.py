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
    assert [p.name for p in out.parent.iterdir()] == ["samples.png"]  # no temp file left
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
