"""`rectflow run`: the whole pipeline end to end on a tiny config, resume, and presets."""
import json

import pytest

from rectflow.stages import presets, train as stages
from rectflow.analysis.evaluate import EvalConfig
from rectflow.stages.run import STAGES
from rectflow.records.checkpoint import lineage

TINY = """
[train]
train_steps = 40
batch_size = 256
save_every = 20
[couple]
n = 1024
steps = 8
[reflow]
train_steps = 20
batch_size = 256
[distill]
train_steps = 20
batch_size = 256
[compare]
n = 256
steps = [1, 2, 4]
seeds = 2
path_steps = 16
reference_rtol = 1e-3
reference_atol = 1e-3
"""


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from rectflow.cli.main import main
    d = tmp_path_factory.mktemp("run")
    (d / "tiny.toml").write_text(TINY)
    try:
        main(["run", "--preset", "moons", "--out", str(d / "run"), "--config", str(d / "tiny.toml")])
    except SystemExit as e:
        assert e.code == 0
    return d


def test_run_writes_every_stage_and_a_comparison(tiny_run):
    run = tiny_run / "run"
    for m in ("rf1", "rf2", "rf3", "distill"):
        cfg = json.loads((run / m / "config.json").read_text())
        assert cfg["complete"] is True and (run / m / "ema.safetensors").is_file()
        report = json.loads((run / "compare" / "evals" / f"{m}.json").read_text())
        assert report["args"]["n"] == 256 and report["seeds"] == [0, 1]
    for p in ("pairs1", "pairs2"):
        assert json.loads((run / p / "manifest.json").read_text())["n"] == 1024
    assert [c["round"] for c in lineage(run / "rf3")] == [1, 2, 3]
    assert [c["path"].rsplit("/", 1)[-1] for c in lineage(run / "rf3")] == ["rf1", "rf2", "rf3"]
    distill = json.loads((run / "distill" / "config.json").read_text())
    assert distill["stage"] == "distill" and distill["parent"]["init"] == "../rf3"
    resolved = json.loads((run / "resolved.json").read_text())["config"]
    assert resolved["train"]["train_steps"] == 40 and resolved["couple"]["n"] == 1024
    assert resolved["reflow"]["time_dist"] == stages.reflow_defaults().time_dist.to_json()
    record = json.loads((run / "run.json").read_text())
    assert list(record["stages"]) == list(STAGES)
    assert all(s["status"] == "ran" and s["seconds"] > 0 for s in record["stages"].values())
    result = json.loads((run / "compare" / "compare.json").read_text())
    assert [(r["name"], r["round"]) for r in result["rows"]] == \
        [("rf1", 1), ("rf2", 2), ("rf3", 3), ("distill", 2)]   # distilled from round-2 pairs
    assert "initialised from round 3" in result["rows"][3]["lineage_text"]
    md = (run / "compare" / "compare.md").read_text().splitlines()
    assert len([r for r in md if r.startswith("|")]) == 2 + 4 + 1   # header, 4 models, floor
    assert any(r.startswith("! W2 floor from 256 points") for r in md)   # a small run says so
    assert len((run / "compare" / "compare.csv").read_text().splitlines()) == 1 + 4
    for pic in ("trajectories.png", "straightness.png", "quality.png"):
        assert (run / "compare" / pic).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_rerun_skips_complete_stages_and_continues_an_interrupted_one(cli, tiny_run):
    run = tiny_run / "run"
    cfg_path = run / "distill" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["complete"] = False     # as if killed before the last save
    cfg_path.write_text(json.dumps(cfg))
    (run / "compare" / "compare.json").unlink()
    code, stdout, err = cli("run", "--preset", "moons", "--out", run, "--config",
                            tiny_run / "tiny.toml")
    assert code == 0, err
    status = {k: v["status"] for k, v in json.loads((run / "run.json").read_text())["stages"].items()}
    assert status == {"rf1": "skipped", "pairs1": "skipped", "rf2": "skipped",
                      "pairs2": "skipped", "rf3": "skipped", "distill": "resumed",
                      "compare": "resumed"}
    assert json.loads(cfg_path.read_text())["complete"] is True
    assert "distill" in stdout and "wall-clock" in stdout
    # a different config on the same folder is refused, touching nothing
    other = tiny_run / "other.toml"
    other.write_text(TINY.replace("train_steps = 40", "train_steps = 41"))
    before = (run / "run.json").read_text()
    code, _, err = cli("run", "--preset", "moons", "--out", run, "--config", other)
    assert code == 2 and "train.train_steps" in err and len(err.strip().splitlines()) == 1
    assert (run / "run.json").read_text() == before


@pytest.mark.parametrize("text, words", [
    ("[train]\nstepz = 5\n", "[train] has no option 'stepz'"),
    ("[train]\ntrain_steps = '500'\n", "[train] train_steps must be a whole number"),
    ("[couple]\nn = 1.5\n", "[couple] n must be a whole number"),
    ("[reflow]\ntime_dist = 'sideways'\n", "time_dist must be one of uniform"),
    ("[bogus]\nx = 1\n", "unknown key 'bogus'"),
    ("[train\n", "not valid TOML"),
])
def test_config_errors_are_one_line(cli, tmp_path, text, words):
    f = tmp_path / "c.toml"
    f.write_text(text)
    code, _, err = cli("run", "--preset", "moons", "--out", tmp_path / "r", "--config", f)
    assert code == 2 and words in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_every_preset_resolves_to_stage_configs():
    for name in presets.PRESETS:
        r = presets.resolve(name)
        assert r["preset"] == name and name.startswith(r["data"].split(":")[0])
        assert presets.train_config(r).train_steps >= 1
        assert presets.train_config(r, "distill").time_dist.kind == "grid"
        assert presets.couple_config(r).n >= 1
        assert isinstance(presets.eval_config(r), EvalConfig)
    r = presets.resolve("moons", overrides={"reflow": {"time_dist": {"kind": "logit-normal",
                                                                     "std": 0.5}},
                                            "distill": {"k": 2}, "model": {"hidden": 64}})
    assert presets.train_config(r, "reflow").time_dist.std == 0.5
    assert presets.train_config(r, "distill").time_dist.k == 2 and r["model"] == {"hidden": 64}
    with pytest.raises(Exception, match="unknown preset"):
        presets.resolve("nope")


def test_a_run_saved_before_a_new_option_existed_still_resumes():
    """resolved.json of an older release lacks newer options; at their defaults that is no
    difference, set otherwise it is."""
    from rectflow.stages import run as pipeline
    saved = {"train": {"lr": 0.003, "steps": 5}, "reflow": {"lr": 3e-4}, "data": "moons"}
    new = {"train": {"lr": 0.003, "steps": 5, "lr_schedule": "constant"},
           "reflow": {"lr": 3e-4, "lr_schedule": "constant"}, "data": "moons"}
    assert pipeline._diff(saved, new) == []
    new["reflow"]["lr_schedule"] = "cosine"
    new["data"] = "8gaussians"
    assert pipeline._diff(saved, new) == ["data", "reflow.lr_schedule"]
