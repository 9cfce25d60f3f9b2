"""Hostile inputs (issue 23): crafted files, non-finite numbers, absurd sizes and thread counts,
markup in paths, too little data, script in model names. Each class of input is refused with
one line on stderr and exit 2 before anything is written (or, for what is not an error, printed
and embedded verbatim), and every case has variants beyond the one reported.
"""
import json
import re
from pathlib import Path

import numpy as np
import pytest

from support import refused, variant, edit_json, point_cloud, small_pairs, tiny_checkpoint, tree_state

CLI = Path(__file__).resolve().parents[2] / "cli"


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    r = tmp_path_factory.mktemp("hostile")
    point_cloud(r / "pts.npy")
    ck = tiny_checkpoint(r / "ck", r / "pts.npy", steps=5)
    # card vs weights: sizes beyond any machine, or only beyond the weights
    edit_json(variant(ck, r / "ck_huge") / "config.json", model__hidden=12000)
    edit_json(variant(ck, r / "ck_absurd") / "config.json", model__hidden=10**9)
    edit_json(variant(ck, r / "ck_deep") / "config.json", model__depth=100000)
    legacy = variant(ck, r / "ck_legacy_huge")   # weights without rectflow's header
    from rectflow.io.files import load_tensors, save_tensors
    for name in ("ema.safetensors", "model.safetensors"):
        save_tensors(legacy / name, load_tensors(legacy / name))
    edit_json(legacy / "config.json", model__hidden=12000)
    # malformed cards: a wrong type in any field
    for field, value in [("shape", "abc"), ("seed", "x"), ("objective", "flow"),
                         ("classes", 5), ("steps_done", 1.5), ("model", [1]),
                         ("sample", 7), ("parent", []), ("conditional", "yes"),
                         ("stage", None)]:
        edit_json(variant(ck, r / f"card_{field}") / "config.json", **{field: value})
    # malformed snapshots
    snap = next((ck / "state").glob("step-*")).name
    for name, change in [("meta_step", {"step": "x"}), ("meta_list", None),
                         ("opt_groups", {"param_groups": "x"}),
                         ("opt_params", {"param_groups__0__params": ["a"]})]:
        folder = variant(ck, r / f"snap_{name}") / "state" / snap
        target = folder / ("meta.json" if name.startswith("meta") else "optimizer.json")
        if change is None:
            target.write_text("[1, 2]")
        else:
            edit_json(target, **change)
    # an unfinished coupling dataset whose shard sidecar was edited
    small_pairs(ck, r / "pairs", n=512)
    for name, change in [("count", {"count": "many"}), ("stats", {"stats": {"n": "x"}}),
                         ("file", {"file": "../../x.safetensors"})]:
        p = variant(r / "pairs", r / f"pairs_side_{name}")
        (p / "manifest.json").unlink()
        edit_json(p / "pairs-00000.json", **change)
    # too little data
    from PIL import Image
    (r / "one_pic").mkdir()
    Image.fromarray(np.full((8, 8, 3), 40, dtype=np.uint8)).save(r / "one_pic" / "a.png")
    (r / "huge_pics").mkdir()
    for i in range(2):
        Image.fromarray(np.full((1100, 1100), 9 * i, dtype=np.uint8)).save(
            r / "huge_pics" / f"{i}.png")
    np.save(r / "one_image.npy", np.zeros((1, 3, 8, 8), dtype=np.float32))
    # run configs that are wrong only in [model] or in a type
    for name, text in [("model_neg", "[model]\nhidden = -3\n"),
                       ("model_str", '[model]\nhidden = "big"\n'),
                       ("model_huge", "[model]\nhidden = 100000\n"),
                       ("model_unknown", "[model]\nhiden = 3\n"),
                       ("model_wrong_net", "[model]\nwidth = 16\n"),
                       ("model_scalar", "model = 5\n"),
                       ("train_scalar", "train = 3\n"),
                       ("data_unknown", 'data = "nosuchset"\n'),
                       ("lr_string", '[train]\nlr = "fast"\n'),
                       ("steps_float", "[train]\nsteps = 1.5\n")]:
        (r / f"{name}.toml").write_text(text)
    return r


SAMPLE = ["sample", "--out", "s.npy", "-n", "8", "--ckpt"]
CASES = [
    # 1. sizes: checked against the weights' header and bounded before anything is built
    ("card-hidden-12000", SAMPLE + ["ck_huge"], "hidden"),
    ("card-hidden-1e9", SAMPLE + ["ck_absurd"], "hidden"),
    ("card-depth-1e5", SAMPLE + ["ck_deep"], "depth"),
    ("card-legacy-weights-huge", SAMPLE + ["ck_legacy_huge"], "shape"),
    ("eval-card-hidden-12000", ["eval", "--ckpt", "ck_huge", "--steps", "1", "-n", "8"], "hidden"),
    ("couple-card-huge", ["couple", "--ckpt", "ck_huge", "--out", "p", "-n", "8"], "hidden"),
    ("train-hidden-huge", ["train", "--data", "pts.npy", "--out", "x", "--hidden", "100000"],
     "hidden"),
    ("train-image-too-large", ["train", "--data", "huge_pics", "--out", "x"], "1100"),
    # 3. malformed rectflow files: which file, which field
    *[(f"card-{f}", SAMPLE + [f"card_{f}"], f) for f in
      ("shape", "seed", "objective", "classes", "steps_done", "model", "sample", "parent",
       "conditional", "stage")],
    *[(f"resume-{n}", ["train", "--out", f"snap_{n}", "--resume", "--train-steps", "10"],
       "meta.json" if n.startswith("meta") else "optimizer.json")
      for n in ("meta_step", "meta_list", "opt_groups", "opt_params")],
    *[(f"couple-sidecar-{n}", ["couple", "--ckpt", "ck", "--out", f"pairs_side_{n}", "-n", "512",
                               "--solver", "euler", "--steps", "4", "--batch-size", "256",
                               "--shard-size", "256"], "pairs-00000.json")
      for n in ("count", "stats", "file")],
    # 2. + 3. run configs: validated before the run folder or resolved.json exists
    *[(f"run-{n}", ["run", "--config", f"{n}.toml", "--out", "run"], word) for n, word in
      [("model_neg", "hidden"), ("model_str", "hidden"), ("model_huge", "hidden"),
       ("model_unknown", "hiden"), ("model_wrong_net", "width"), ("model_scalar", "model"),
       ("train_scalar", "train"), ("data_unknown", "nosuchset"), ("lr_string", "lr"),
       ("steps_float", "steps")]],
    # 4. non-finite numbers in every float flag
    ("sample-guidance-nan", SAMPLE + ["ck", "--guidance", "nan"], "--guidance"),
    ("sample-guidance-inf", SAMPLE + ["ck", "--guidance", "inf"], "--guidance"),
    ("sample-atol-neg-inf", SAMPLE + ["ck", "--atol", "-inf"], "--atol"),
    ("train-lr-nan", ["train", "--data", "pts.npy", "--out", "x", "--lr", "nan"], "--lr"),
    ("train-logit-std-nan", ["train", "--data", "pts.npy", "--out", "x", "--logit-std", "nan"],
     "--logit-std"),
    ("eval-rtol-nan", ["eval", "--ckpt", "ck", "--rtol", "nan"], "--rtol"),
    ("couple-guidance-inf", ["couple", "--ckpt", "ck", "--out", "p", "--guidance", "inf"],
     "--guidance"),
    ("invert-rtol-nan", ["invert", "--ckpt", "ck", "--input", "pts.npy", "--out", "src.npy",
                         "--rtol", "nan"], "--rtol"),
    ("translate-rtol-nan", ["translate", "--ckpt", "ck", "--input", "pts.npy", "--out", "tr",
                            "--rtol", "nan"], "--rtol"),
    # 5. thread counts
    ("threads-flag-huge", SAMPLE + ["ck", "--threads", "99999"], "--threads"),
    # 7. too little data
    ("train-one-image", ["train", "--data", "one_pic", "--out", "x", "--train-steps", "2"],
     "at least 2"),
    ("train-one-image-array", ["train", "--data", "one_image.npy", "--out", "x"], "2"),
]


@pytest.mark.parametrize("case,argv,word", CASES, ids=[c[0] for c in CASES])
def test_hostile_input_is_one_line_exit_2_and_touches_nothing(cli, root, monkeypatch, case,
                                                              argv, word):
    refused(cli, root, monkeypatch, argv, word)


@pytest.mark.parametrize("value", ["99999", "1000000000000"])
@pytest.mark.parametrize("argv", [SAMPLE + ["ck"], ["train", "--data", "pts.npy", "--out", "x"]])
def test_a_huge_thread_count_from_the_environment_is_one_line(root, value, argv):
    """In a process of its own: the thread policy is set once per process."""
    import subprocess

    from support import cli_cmd, subprocess_env
    before = tree_state(root)
    r = subprocess.run(cli_cmd(*argv), cwd=root, capture_output=True, text=True, timeout=300,
                       env={**subprocess_env(), "OMP_NUM_THREADS": value})
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and "OMP_NUM_THREADS" in lines[0], r.stderr
    assert tree_state(root) == before


def test_a_crafted_card_is_refused_before_the_network_is_built(root, monkeypatch):
    """The weights' header decides: nothing of the card's size is ever allocated."""
    import torch

    from rectflow import models
    from rectflow.records.checkpoint import Checkpoint
    from rectflow.errors import CheckpointError
    built = []
    monkeypatch.setattr(models.MLP, "__init__", lambda self, *a, **k: (
        built.append(torch.empty(0).device.type), torch.nn.Module.__init__(self))[1])
    for name in ("ck_huge", "ck_legacy_huge", "ck_absurd"):
        with pytest.raises(CheckpointError):
            Checkpoint(root / name).load_model()
    assert set(built) <= {"meta"}, built   # planned on the meta device only


@pytest.mark.parametrize("record,body,word", [
    ("RunLog", {"preset": "moons", "stages": 5}, "stages"),
    ("RunLog", {"preset": 3}, "preset"),
    ("RunLog", {"stages": {}}, "preset"),
    ("ResolvedRun", {"config": 3}, "config"),
    ("ResolvedRun", {}, "config"),
    ("EvalReport", {"checkpoint": "c", "stage": "train", "round": "1"}, "args"),
    ("ClassifierCache", {"dataset": "digits", "net": {"channels": 100000}}, "channels"),
    ("ClassifierCache", {"dataset": "digits", "net": {"channels": "1"}}, "net"),
    ("SnapshotMeta", {"step": -1}, "step"),
    ("ShardSidecar", {"file": "pairs-00000.safetensors", "start": 0, "count": 1,
                      "sha256": "0", "nfe": float("nan"), "stats": {}}, "nfe"),
])
def test_every_record_names_the_file_and_field(tmp_path, record, body, word):
    import rectflow.records as records
    import rectflow.records.snapshot as snapshot
    from rectflow.errors import CheckpointError
    cls = getattr(records, record, None) or getattr(snapshot, record)
    path = tmp_path / cls.FILENAME
    path.write_text(json.dumps({"format": cls.FORMAT, "version": 1, **body}))
    with pytest.raises(CheckpointError) as e:
        cls.read(path)
    assert str(path) in str(e.value) and word in str(e.value), e.value
    assert "\n" not in str(e.value)


def test_unversioned_bookkeeping_of_older_runs_still_reads(tmp_path):
    from rectflow.records.snapshot import SnapshotMeta
    (tmp_path / "meta.json").write_text('{"seed": 0, "world": 1, "step": 5}')
    assert SnapshotMeta.read(tmp_path / "meta.json").step == 5


@pytest.mark.parametrize("message", ["[enforce fail at alloc_cpu.cpp:117] data. "
                                     "DefaultCPUAllocator: can't allocate memory: you tried to "
                                     "allocate 1717986918400 bytes. Error code 12",
                                     "not enough memory: you tried to allocate 8 GB"])
def test_torch_cpu_allocation_failure_is_out_of_memory(cli, root, monkeypatch, message):
    from rectflow.stages import train as stages

    def fail(*a, **k):
        raise RuntimeError(message)
    monkeypatch.setattr(stages, "sample", fail)
    refused(cli, root, monkeypatch, SAMPLE + ["ck"], "out of memory")


def test_a_safetensors_error_anywhere_is_one_line(cli, root, monkeypatch):
    from safetensors import SafetensorError

    from rectflow.stages import train as stages

    def fail(*a, **k):
        raise SafetensorError("Error while deserializing header: HeaderTooLarge")
    monkeypatch.setattr(stages, "sample", fail)
    refused(cli, root, monkeypatch, SAMPLE + ["ck"], "safetensors")


# ------------------------------------------------------------------ 6. markup in user strings
@pytest.mark.parametrize("name", ["m[/x]", "[bold]b[/bold]", "e:smile:", "q[link=x]"])
def test_paths_are_printed_verbatim(cli, root, tmp_path, name, monkeypatch):
    out = tmp_path / name / "s.npy"
    out.parent.mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    code, stdout, err = cli("sample", "--ckpt", root / "ck", "--out", out, "-n", "8")
    assert code == 0, err
    assert str(out) in "".join(stdout.split("\n")), stdout


def test_cli_makes_consoles_only_through_the_plain_factory():
    sources = {p.name: p.read_text() for p in CLI.glob("*.py")}
    makers = {n for n, s in sources.items() if re.search(r"\b(Rich)?Console\(", s)}
    assert makers == {"console.py"}, makers
    assert 'setdefault("markup", False)' in sources["console.py"]
    assert not [n for n, s in sources.items() if re.search(r"\[/?bold\]|\[/\]", s)]


# ------------------------------------------------------------------------------- 8. explorer
@pytest.mark.parametrize("name", ["<!--<script>", "</script><script>alert(1)</script>",
                                  "a\u2028b\u2029c", "x&amp;<b>"])
def test_explorer_json_cannot_leave_its_script(name):
    from rectflow.analysis.explore import script_json
    data = {"models": {name: {"metrics": {}}}, "title": name}
    text = script_json(data)
    assert not set(text) & set("<>&\u2028\u2029"), text
    assert json.loads(text) == data


def test_explorer_page_looks_up_own_keys_only():
    page = (Path(__file__).resolve().parents[2] / "rectflow" / "analysis" / "explore_page.html").read_text()
    script = page[page.index('"use strict"'):]
    assert not re.search(r"\bin DATA\.|\)\s*in DATA|cache\[", script)
    assert "hasOwnProperty" in script


# ------------------------------------------------------------------------- 9. compare's default
def test_compare_default_output_never_needs_a_flag_it_lacks(cli, root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = ["compare", "--ckpt", root / "ck", "-n", "16", "--steps", "1", "--seeds", "1",
            "--no-adaptive", "--path-steps", "4", "--ot-subsample", "16"]
    for expected in ("compare", "compare-2"):
        code, _, err = cli(*argv)
        assert code == 0, err
        assert (tmp_path / expected / "compare.json").is_file()
    before = tree_state(tmp_path)
    code, _, err = cli(*argv, "--out", "compare")
    assert code == 2 and "--overwrite" in err and len(err.strip().splitlines()) == 1, err
    assert tree_state(tmp_path) == before
