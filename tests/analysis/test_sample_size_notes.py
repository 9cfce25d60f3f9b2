"""Honest numbers on small data: a W2 floor from too few points is flagged, and a held-out
set too small for a verdict ranks nothing."""
import json

import numpy as np

from rectflow.analysis.compare import notes_of, table
from rectflow.core.metrics import (VERDICT_MIN, few_points, sample_size_notes, verdict,
                                   w2_points_needed)


def test_the_rules():
    assert w2_points_needed(2) == 500 and w2_points_needed(784) == 7840
    assert not verdict(VERDICT_MIN - 1) and verdict(VERDICT_MIN)
    assert few_points({"w2": 0.3, "w2_points": 499, "w2_points_needed": 500})
    assert not few_points({"w2": 0.3, "w2_points": 500, "w2_points_needed": 500})
    assert not few_points({"fd": 1.0, "w2_points": 10, "w2_points_needed": 500}, "fd")
    assert not few_points({"w2": 0.3})   # an older report without counts: nothing claimed
    assert sample_size_notes(2000, {"w2_points": 2000, "w2_points_needed": 500}) == []
    small = sample_size_notes(40, {"w2_points": 40, "w2_points_needed": 500})
    assert small[0] == ("held-out set of 40: too small for a verdict (fewer than 100 points); "
                        "nothing is ranked")
    assert small[1].startswith("! W2 floor from 40 points, fewer than the 500 it needs")


def _result(n_reference):
    def row(name, mean):
        return {"name": name, "stage": "train", "round": 1, "straightness": 0.1,
                "straightness_per_dim": 0.05, "curvature": 0.1, "transport_cost": 1.0,
                "ot_cost": 0.9, "reference": None,
                "quality": {"1": {"w2": mean, "w2_std": 0.01}}}
    return {"primary_metric": "w2", "args": {"steps": [1]}, "n_reference": n_reference,
            "rows": [row("a", 0.5), row("b", 0.9)],
            "floors": {"w2": 0.2, "w2_std": 0.01, "w2_points": n_reference,
                       "w2_points_needed": 500}}


def test_a_small_held_out_set_ranks_nothing_and_flags_the_floor():
    _, big = table(_result(600))
    assert big[0][-3].endswith("*") and not big[1][-3].endswith(("*", "~"))
    assert not big[2][-3].endswith("!") and notes_of(_result(600)) == []
    _, small = table(_result(40))
    assert [r[-3] for r in small] == ["0.5 ± 0.01", "0.9 ± 0.01", "0.2 ± 0.01 !"]
    assert notes_of(_result(40))[0].startswith("held-out set of 40: too small for a verdict")


def test_training_on_a_small_file_says_so(cli, tmp_path):
    rng = np.random.default_rng(0)
    data = tmp_path / "points.npy"
    np.save(data, rng.normal(size=(400, 2)).astype(np.float32))   # 40 held out
    code, out, err = cli("train", "--data", data, "--out", tmp_path / "rf1", "--train-steps",
                         "3", "--eval-n", "200", "--threads", "1")
    assert code == 0, err
    text = " ".join(out.split())
    assert "held-out set of 40: too small for a verdict" in text
    assert "! W2 floor from 40 points, fewer than the 500 it needs" in text
    floors = json.loads((tmp_path / "rf1" / "eval.json").read_text())["floors"]
    assert floors["w2_points"] == 40 and floors["w2_points_needed"] == 500
