"""`rectflow run --data FILE`: the whole pipeline on a user's own point file with no preset
and no TOML; the preset comes from the kind of data and the tables name the file."""
import json

import numpy as np

from rectflow.stages import presets
from smoke_support import failure, run


def test_run_on_a_users_npy_file_names_it(tmp_path):
    g = np.random.default_rng(0)
    t = g.uniform(0, np.pi, 400)
    points = np.stack([np.cos(t), np.sin(t)], 1) + 0.05 * g.standard_normal((400, 2))
    np.save(tmp_path / "arc.npy", points.astype(np.float32))
    proc = run(["python", "-m", "rectflow.cli.main", "run", "--data", "arc.npy", "--threads",
                "1"], tmp_path)
    assert proc.returncode == 0, failure("run --data arc.npy", proc)
    out = tmp_path / "checkpoints" / "arc-run"
    text = " ".join(proc.stdout.split())
    assert "arc.npy: paths on" in text and "arc.npy: sample quality" in text
    assert "moons:" not in text and "file:" not in text
    resolved = json.loads((out / "resolved.json").read_text())["config"]
    assert resolved["data"] == "arc.npy" and resolved["preset"] == "moons"
    assert json.loads((out / "compare" / "compare.json").read_text())["data"]["path"] == \
        str((tmp_path / "arc.npy").resolve())


def test_the_preset_of_data_given_alone(tmp_path):
    np.save(tmp_path / "pts.npy", np.zeros((10, 3), np.float32))
    np.save(tmp_path / "imgs.npy", np.zeros((10, 1, 8, 8), np.float32))
    assert presets.preset_for(str(tmp_path / "pts.npy")) == "moons"
    assert presets.preset_for(str(tmp_path / "imgs.npy")) == "digits"
    assert presets.preset_for("8gaussians") == "8gaussians"
    assert presets.preset_for(None) == "moons"
