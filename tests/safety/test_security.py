"""Nothing a user hands rectflow is unpickled, and manifests cannot point outside their folder.

The payloads are live: unpickling any of them creates a marker file (checked first, so the
test cannot pass by accident). Each is then planted where rectflow reads weights, pairs,
snapshots or data; every command must refuse it with one line and exit 2, and the marker must
never appear.
"""
import hashlib
import pickle
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import rectflow
from support import edit_json, point_cloud, small_pairs, tiny_checkpoint


class Payload:
    """Unpickling this opens (creates) ``marker``."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def raw_pickle(marker: Path) -> bytes:
    return pickle.dumps({"net.0.weight": Payload(marker)})


def torch_zip(marker: Path, path: Path) -> Path:
    torch.save({"net.0.weight": Payload(marker)}, path)
    return path


def object_npy(marker: Path, path: Path) -> Path:
    np.save(path, np.array([[Payload(marker), 1.0]] * 3, dtype=object), allow_pickle=True)
    return path


def object_npz(marker: Path, path: Path) -> Path:
    np.savez(path, x=np.array([[Payload(marker), 1.0]] * 3, dtype=object))
    return path


def test_payloads_are_live(tmp_path):
    """Control: each payload does run code when loaded the unsafe way."""
    for i, load in enumerate([
        lambda m: pickle.loads(raw_pickle(m)),
        lambda m: torch.load(torch_zip(m, tmp_path / "w.pt"), weights_only=False),
        lambda m: np.load(object_npy(m, tmp_path / "w.npy"), allow_pickle=True),
        lambda m: np.load(object_npz(m, tmp_path / "w.npz"), allow_pickle=True)["x"],
    ]):
        marker = tmp_path / f"marker{i}"
        load(marker)
        assert marker.exists(), i


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = tmp_path_factory.mktemp("sec")
    data = point_cloud(root / "pts.npy")
    ck = tiny_checkpoint(root / "ck", data, steps=10)
    tiny_checkpoint(root / "ck_partial", data, steps=4)   # a run --resume can continue
    return {"ck": ck, "partial": root / "ck_partial", "pairs": small_pairs(ck, root / "pairs"),
            "data": data}


def plant_weights(tmp_path, base, name, make):
    ck = shutil.copytree(base["ck"], tmp_path / "ck")
    make(tmp_path / "PWNED", ck / name)
    return ck


def plant_shard(tmp_path, base, make):
    pairs = shutil.copytree(base["pairs"], tmp_path / "pairs")
    shard = make(tmp_path / "PWNED", pairs / "pairs-00000.safetensors")
    edit_json(pairs / "manifest.json",   # so the shard passes its checksum
              shards__0__sha256=hashlib.sha256(shard.read_bytes()).hexdigest())
    return pairs


def plant_snapshot(tmp_path, base, make):
    run = shutil.copytree(base["partial"], tmp_path / "run")
    snap = run / "state" / (run / "state" / "LATEST").read_text().strip()
    make(tmp_path / "PWNED", snap / "optimizer.safetensors")
    return run


def write_bytes(fn):
    def make(marker, path):
        path.write_bytes(fn(marker))
        return path
    return make


RAW = write_bytes(raw_pickle)
ZIP = torch_zip

# (id, argv builder(tmp_path, base) -> argv)
CASES = [
    ("ema-raw-pickle/sample", lambda t, b: [
        "sample", "--ckpt", plant_weights(t, b, "ema.safetensors", RAW), "--out", t / "s.npy"]),
    ("ema-torch-zip/sample", lambda t, b: [
        "sample", "--ckpt", plant_weights(t, b, "ema.safetensors", ZIP), "--out", t / "s.npy"]),
    ("model-raw-pickle/sample-no-ema", lambda t, b: [
        "sample", "--ckpt", plant_weights(t, b, "model.safetensors", RAW), "--no-ema",
        "--out", t / "s.npy"]),
    ("ema-raw-pickle/couple", lambda t, b: [
        "couple", "--ckpt", plant_weights(t, b, "ema.safetensors", RAW), "--out", t / "p",
        "--n", 64]),
    ("model-torch-zip/couple-no-ema", lambda t, b: [
        "couple", "--ckpt", plant_weights(t, b, "model.safetensors", ZIP), "--no-ema",
        "--out", t / "p", "--n", 64]),
    ("ema-raw-pickle/eval", lambda t, b: [
        "eval", "--ckpt", plant_weights(t, b, "ema.safetensors", RAW), "--n", 64]),
    ("ema-raw-pickle/reflow-init", lambda t, b: [
        "reflow", "--pairs", b["pairs"], "--init", plant_weights(t, b, "ema.safetensors", RAW),
        "--out", t / "r", "--train-steps", 2]),
    ("shard-raw-pickle/reflow", lambda t, b: [
        "reflow", "--pairs", plant_shard(t, b, RAW), "--init", b["ck"], "--out", t / "r",
        "--train-steps", 2]),
    ("shard-torch-zip/distill", lambda t, b: [
        "distill", "--pairs", plant_shard(t, b, ZIP), "--init", b["ck"], "--out", t / "d",
        "--train-steps", 2]),
    ("snapshot-raw-pickle/train-resume", lambda t, b: [
        "train", "--out", plant_snapshot(t, b, RAW), "--resume", "--train-steps", 8]),
    ("points-object-npy/train", lambda t, b: [
        "train", "--data", object_npy(t / "PWNED", t / "evil.npy"), "--out", t / "r"]),
    ("points-object-npz/train", lambda t, b: [
        "train", "--data", object_npz(t / "PWNED", t / "evil.npz"), "--out", t / "r"]),
    ("points-pickle-as-safetensors/train", lambda t, b: [
        "train", "--data", RAW(t / "PWNED", t / "evil.safetensors"), "--out", t / "r"]),
    ("points-torch-zip-as-npy/train", lambda t, b: [
        "train", "--data", ZIP(t / "PWNED", t / "zip.npy"), "--out", t / "r"]),
]


@pytest.mark.parametrize("build", [c[1] for c in CASES], ids=[c[0] for c in CASES])
def test_pickles_are_refused_and_never_run(cli, tmp_path, base, build, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = build(tmp_path, base)
    code, _, err = cli(*argv)
    assert code == 2 and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1 and err.startswith("rectflow: error:"), err
    assert not (tmp_path / "PWNED").exists()


def test_cifar10_python_pickles_are_refused(cli, tmp_path):
    """The pickled 'python version' of CIFAR-10 is never opened; the binary one is asked for."""
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in ("data_batch_1", "test_batch", "batches.meta"):
        (folder / name).write_bytes(raw_pickle(tmp_path / "PWNED"))
    code, _, err = cli("train", "--data", "cifar10", "--data-root", tmp_path,
                       "--out", tmp_path.parent / f"{tmp_path.name}-r")
    assert code == 2 and "binary" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "PWNED").exists()


# ------------------------------------------------------------------- paths inside their folder
@pytest.mark.parametrize("name", ["../../x.safetensors", "/etc/passwd",
                                  "sub/pairs-00000.safetensors", "pairs-00000.safetensors/.."])
def test_manifest_shards_must_be_plain_names_in_the_folder(cli, tmp_path, base, name):
    pairs = shutil.copytree(base["pairs"], tmp_path / "pairs")
    edit_json(pairs / "manifest.json", shards__0__file=name)
    code, _, err = cli("reflow", "--pairs", pairs, "--out", tmp_path / "r", "--train-steps", 2)
    assert code == 2 and "not a plain pairs-NNNNN.safetensors" in err, err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("pointer", ["../../../ck/state/step-00000010", "/tmp", "step-1"])
def test_resume_pointer_cannot_leave_the_checkpoint(cli, tmp_path, base, pointer):
    run = shutil.copytree(base["partial"], tmp_path / "run")
    (run / "state" / "LATEST").write_text(pointer)
    code, _, err = cli("train", "--out", run, "--resume", "--train-steps", 8)
    assert code == 2 and "not a step-NNNNNNNN snapshot" in err, err


def test_teacher_path_is_read_only_as_a_checkpoint(cli, tmp_path, base):
    """The teacher lives beside the pairs (``../rf1``), so its path may leave the folder; what
    it names is only ever read as config.json + safetensors, and a non-checkpoint is refused."""
    pairs = shutil.copytree(base["pairs"], tmp_path / "pairs")
    evil = tmp_path / "evil_teacher"
    shutil.copytree(base["ck"], evil)
    (evil / "ema.safetensors").write_bytes(raw_pickle(tmp_path / "PWNED"))
    edit_json(pairs / "manifest.json", teacher__path="../evil_teacher")
    code, _, err = cli("reflow", "--pairs", pairs, "--out", tmp_path / "r", "--train-steps", 2)
    assert code == 2 and "differs from the sha256 in their manifest" in err, err  # only hashed
    code, _, err = cli("reflow", "--pairs", pairs, "--init", evil, "--out", tmp_path / "r",
                       "--train-steps", 2)
    assert code == 2 and "not a valid safetensors file" in err, err
    assert not (tmp_path / "PWNED").exists()


# ------------------------------------------------------------------------ no unpickling at all
UNSAFE = re.compile(r"torch\.load\(|pickle\.loads?\(|import pickle|from pickle|allow_pickle\s*="
                    r"\s*True|joblib\.load|dill\.|np\.load\((?![^)]*allow_pickle=False)")


def test_source_never_calls_an_unpickler():
    pkg = Path(rectflow.__file__).parent
    files = [*pkg.rglob("*.py"), *(pkg.parent / "cli").rglob("*.py")]
    assert len(files) > 20
    hits = [f"{f}: {m.group(0)}" for f in files for m in UNSAFE.finditer(f.read_text())]
    assert not hits, hits
