"""`rectflow couple`: deterministic, resumable, multi-process coupling datasets and their reader."""
import json
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from rectflow.records import checkpoint as ckpt
from rectflow.cli.main import main
from rectflow.data.pairs import PairsDataset, StoredPairs
from rectflow.errors import CheckpointError
from rectflow.models import build_model
from rectflow.core.seeding import block_noise
from support import cli_cmd, subprocess_env, torchrun_cmd, tree_state

N, SHARD, CHUNK = 3000, 700, 333   # 5 shards, the last one short; ragged eval chunks
ARGS = ["-n", str(N), "--solver", "rk4", "--steps", "6", "--shard-size", str(SHARD),
        "--eval-chunk", str(CHUNK), "--seed", "3", "--ot-subsample", "300"]


def make_teacher(path: Path, hidden: int = 32) -> Path:
    """A tiny untrained MLP whose velocities are O(1), saved as a checkpoint folder."""
    cfg = {"type": "mlp", "dim": 2, "hidden": hidden, "depth": 2, "time_embed": 16,
           "act": "silu"}
    torch.manual_seed(0)
    model = build_model(cfg)
    with torch.no_grad():
        model.net[-1].weight.mul_(20.0)
    sd = {k: v.detach().float() for k, v in model.state_dict().items()}
    ckpt.save_tensors(path / "model.safetensors", sd)
    ckpt.save_tensors(path / "ema.safetensors", sd)
    ckpt.atomic_write_json(path / "config.json", {
        "format": "rectflow/checkpoint", "version": 1, "stage": "train", "round": 1,
        "parent": None, "data": {"name": "moons"}, "shape": [2], "model": cfg,
        "train": {}, "seed": 0, "normalization": {"shift": 0.0, "scale": 1.0},
        "sample": {"solver": "euler", "steps": 10}, "complete": True})
    return path


def shard_bytes(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("pairs-*.safetensors"))}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The CPU is shared: intra-op threads only add contention for these small models (the
    bytes do not depend on it; the torchrun processes run one thread each too)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("couple")


@pytest.fixture(scope="module")
def teacher(work):
    return make_teacher(work / "teacher")


@pytest.fixture(scope="module")
def ref(work, teacher):
    """The reference dataset: one process, --batch-size 64 (rounded to one eval chunk)."""
    out = work / "ref"
    with pytest.raises(SystemExit) as e:
        main(["couple", "--ckpt", str(teacher), "--out", str(out), "--batch-size", "64", *ARGS])
    assert e.value.code == 0
    return out


def copy_of(ref: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "pairs"
    shutil.copytree(ref, dst)
    return dst


def one_line_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rectflow: error: "), err
    return lines[0]


def test_manifest_provenance_metrics_and_contents(ref, teacher):
    m = json.loads((ref / "manifest.json").read_text())
    assert (ref / m["teacher"]["path"]).resolve() == teacher.resolve()
    assert m["teacher"]["sha256"] == ckpt.sha256_file(teacher / "ema.safetensors")
    assert m["teacher"]["weights"] == "ema"
    assert m["solver"] == {"method": "rk4", "steps": 6} and m["nfe"] == 24
    assert m["seed"] == 3 and m["shape"] == [2] and m["n"] == N
    assert [s["count"] for s in m["shards"]] == [700, 700, 700, 700, 200]
    for s in m["shards"]:
        assert ckpt.sha256_file(ref / s["file"]) == s["sha256"]
    pairs = PairsDataset(ref)
    x0, x1 = pairs.head(N)
    assert torch.equal(x0, block_noise(0, N, (2,), 3))         # noise from (seed, block)
    # metrics cover every pair: the stored transport cost is that of the stored endpoints
    met = m["metrics"]
    assert met["n"] == N
    assert met["transport_cost"] == pytest.approx(float((x1 - x0).pow(2).sum(1).mean()), rel=1e-6)
    assert met["straightness_per_dim"] == pytest.approx(met["straightness"] / 2)
    assert 0 < met["straightness"] and 0 < met["curvature"]
    assert 0 < met["ot_cost"] <= met["transport_cost"] * 1.5 and met["ot_subsample"] == 300


def test_batch_size_does_not_change_a_byte(ref, teacher, tmp_path, cli):
    code, out, _ = cli("couple", "--ckpt", teacher, "--out", tmp_path / "b1000",
                       "--batch-size", "1000", *ARGS)
    assert code == 0 and out.count("coupling metrics") == 1
    assert shard_bytes(tmp_path / "b1000") == shard_bytes(ref)
    assert len(shard_bytes(ref)) == 5


def test_metrics_subsample(teacher, tmp_path, cli):
    code, _, _ = cli("couple", "--ckpt", teacher, "--out", tmp_path / "sub", "-n", 500,
                     "--steps", 2, "--shard-size", 200, "--metrics-subsample", 250,
                     "--ot-subsample", 100)
    assert code == 0
    m = json.loads((tmp_path / "sub" / "manifest.json").read_text())
    x0, x1 = PairsDataset(tmp_path / "sub").head(250)
    assert m["metrics"]["n"] == 250
    assert m["metrics"]["transport_cost"] == pytest.approx(
        float((x1 - x0).pow(2).sum(1).mean()), rel=1e-6)


def test_two_processes_under_torchrun_match_one(ref, teacher, tmp_path):
    out = tmp_path / "tr"
    r = subprocess.run(torchrun_cmd("couple", "--ckpt", teacher, "--out", out,
                                    "--batch-size", "1000", *ARGS),
                       capture_output=True, text=True, timeout=120, env=subprocess_env())
    assert r.returncode == 0, r.stderr
    assert shard_bytes(out) == shard_bytes(ref)
    writers = {json.loads(p.read_text())["process"] for p in out.glob("pairs-*.json")}
    assert writers == {0, 1}                                   # both processes wrote shards
    assert r.stdout.count("coupling metrics") == 1 and r.stdout.count("NFE per pair") == 1
    assert r.stderr.count(f"{N}/{N}") == 1                      # one progress bar
    m = json.loads((out / "manifest.json").read_text())
    assert m["metrics"]["n"] == N


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_killed_run_resumes_missing_shards_only(teacher, tmp_path, cli, sig):
    """A kill (SIGKILL) or Ctrl-C (SIGINT, which stops between shards and says how to go on)
    part way: the finished shards are kept and a rerun writes only the missing ones."""
    out = tmp_path / "killed"
    n, shard = 30_000, 1000
    args = ["couple", "--ckpt", str(teacher), "--out", str(out), "-n", str(n), "--steps", "20",
            "--shard-size", str(shard), "--ot-subsample", "200", "--batch-size", "2048"]
    proc = subprocess.Popen(cli_cmd(*args), env=subprocess_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not list(out.glob("pairs-*.json")):   # wait for the first finished shard
            assert proc.poll() is None and time.monotonic() < deadline, "run ended too early"
            time.sleep(0.005)
    finally:
        proc.send_signal(sig)
        err = proc.communicate(timeout=120)[1]
    if sig == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL
    else:
        assert proc.returncode == 130, err
        assert "shards" in err and "rerun: rectflow couple" in err and "--resume" not in err
    assert not (out / "manifest.json").exists()
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("pairs-*.json")}
    before.update({p.name.replace(".json", ".safetensors"):
                   (out / p.name.replace(".json", ".safetensors")).stat().st_mtime_ns
                   for p in out.glob("pairs-*.json")})
    assert 0 < len(before) < n // shard * 2                    # killed part way

    code, _, err = cli(*args[:-1], "512")             # any batch size resumes
    assert code == 0, err
    for name, mtime in before.items():                         # finished shards untouched
        assert (out / name).stat().st_mtime_ns == mtime, name
    assert not list(out.glob(".*.tmp"))                        # no half-written leftovers
    pairs = PairsDataset(out)
    pairs.verify()
    index = torch.cat([pairs.read_shard(i)["index"] for i in range(len(pairs.shards))])
    assert torch.equal(index, torch.arange(n))                 # every index exactly once


def test_corrupted_shard_is_detected(ref, tmp_path, cli):
    pairs = copy_of(ref, tmp_path)
    shard = pairs / "pairs-00002.safetensors"
    data = bytearray(shard.read_bytes())
    data[-5] ^= 0x01                                           # one bit of one stored float
    shard.write_bytes(bytes(data))
    ds = PairsDataset(pairs)
    ds.read_shard(1)
    with pytest.raises(CheckpointError, match="sha256"):
        ds.read_shard(2)
    with pytest.raises(CheckpointError, match="sha256"):
        ds.verify()
    code, _, err = cli("reflow", "--pairs", pairs, "--out", tmp_path / "rf2",
                       "--train-steps", 1)
    assert code == 2 and "pairs-00002.safetensors fails its sha256" in one_line_error(err)
    assert not (tmp_path / "rf2").exists()


def test_mismatched_args_are_refused_and_touch_nothing(ref, teacher, tmp_path, cli):
    pairs = copy_of(ref, tmp_path)
    (pairs / "manifest.json").unlink()                         # an unfinished run...
    before = tree_state(pairs)
    bad = [a if a != "6" else "7" for a in ARGS]               # ...rerun with other --steps
    code, _, err = cli("couple", "--ckpt", teacher, "--out", pairs, *bad)
    assert code == 2 and "--steps" in one_line_error(err)
    code, _, err = cli("couple", "--ckpt", teacher, "--out", pairs, "--no-ema", *ARGS)
    assert code == 2 and "--use-ema" in one_line_error(err)
    assert tree_state(pairs) == before


def test_complete_dataset_is_never_rewritten(ref, teacher, tmp_path, cli):
    pairs = copy_of(ref, tmp_path)
    before = tree_state(pairs)
    code, out, _ = cli("couple", "--ckpt", teacher, "--out", pairs,
                       "--batch-size", "500", *ARGS)
    assert code == 0 and "already complete" in out and "coupling metrics" in out
    assert tree_state(pairs) == before


def test_out_that_is_not_a_pairs_folder_is_refused(teacher, tmp_path, cli):
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    code, _, err = cli("couple", "--ckpt", teacher, "--out", tmp_path / "other", *ARGS)
    assert code == 2 and "not made by rectflow" in one_line_error(err)
    assert [p.name for p in (tmp_path / "other").iterdir()] == ["notes.txt"]


def test_leftover_temp_files_of_a_killed_first_write_are_cleaned(teacher, tmp_path, cli):
    from rectflow.io import FolderLock, ensure_output
    from rectflow.io.remove import token_of
    out = tmp_path / "fresh"
    with FolderLock(out):
        ensure_output(out, "pairs")                              # marked, then killed ...
    (out / f".plan.json.{token_of(out)[:8]}-k1ll3d.tmp").write_text("{")   # ... mid-write
    code, _, err = cli("couple", "--ckpt", teacher, "--out", out, "-n", 50,
                       "--steps", 1, "--ot-subsample", 10)
    assert code == 0, err
    assert not list(out.glob(".*.tmp")) and (out / "manifest.json").is_file()


@pytest.mark.parametrize("name", ["../../x.safetensors", "/etc/passwd", "sub/pairs-00000.safetensors"])
def test_manifest_path_outside_the_folder_is_refused(ref, tmp_path, cli, name):
    pairs = copy_of(ref, tmp_path)
    m = json.loads((pairs / "manifest.json").read_text())
    m["shards"][0]["file"] = name
    (pairs / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(CheckpointError, match="plain pairs-NNNNN"):
        PairsDataset(pairs)
    code, _, err = cli("reflow", "--pairs", pairs, "--out", tmp_path / "rf2",
                       "--train-steps", 1)
    assert code == 2 and "plain pairs-NNNNN" in one_line_error(err)


def test_stored_pairs_shuffle_across_and_within_shards(ref):
    pairs = PairsDataset(ref)
    x0_all, x1_all = pairs.head(N)
    index_of = {x.item(): i for i, x in enumerate(x0_all[:, 0])}
    src = StoredPairs(pairs, seed=0, window=2)
    x0, x1 = src.batch(0, N)                                   # exactly one epoch
    idx = torch.tensor([index_of[x.item()] for x in x0[:, 0]])
    assert torch.equal(idx.sort().values, torch.arange(N))     # every pair once
    assert torch.equal(x1, x1_all[idx])                        # pairs stay paired
    first = idx[:256] // SHARD
    assert len(set(first.tolist())) > 1                         # a batch mixes shards
    assert not torch.equal(idx[:256].sort().values, idx[:256])  # and is shuffled inside
    b0, _ = src.batch(3, 100)
    assert torch.equal(b0, x0[300:400])                        # addressed by position


@pytest.mark.parametrize("solver,nfe", [("heun", 8), ("rk4", 16), ("dopri5", None)])
def test_sample_uses_the_same_solvers(teacher, tmp_path, cli, solver, nfe):
    code, out, err = cli("sample", "--ckpt", teacher, "--out", tmp_path / "s.npy",
                         "--n", 50, "--steps", 4, "--solver", solver)
    assert code == 0, err
    import re
    reported = float(re.search(r"([\d.]+) NFE per sample", " ".join(out.split())).group(1))
    assert reported == nfe if nfe else reported > 6
