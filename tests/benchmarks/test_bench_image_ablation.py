"""The image-recipe ablation (benchmarks/image_ablation.py) and its second image set
(benchmarks/shapes.py): the generator draws what it says, the same for a seed, and the table
ranks only rows run on every seed, beside TorchCFM's measured rows. Harness, not figures."""
import argparse
import json
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture()
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    import image_ablation
    import shapes
    return image_ablation, shapes


def test_shapes_are_seeded_balanced_and_drawn(bench):
    _, shapes = bench
    x, y = shapes.generate(60, 5)
    x2, y2 = shapes.generate(60, 5)
    assert x.dtype == np.uint8 and x.shape == (60, 1, shapes.SIZE, shapes.SIZE)
    assert np.array_equal(x, x2) and np.array_equal(y, y2)
    assert not np.array_equal(x, shapes.generate(60, 6)[0])
    assert np.bincount(y).tolist() == [10] * len(shapes.CLASSES)
    lit = x.reshape(60, -1)
    assert (lit.max(1) >= 128).all()                          # every image holds a shape
    assert set(np.unique(lit)) - {0} <= set(range(128, 256))  # on black, one brightness each
    assert all(len(set(row[row > 0])) == 1 for row in lit)
    bars = lit[y == 0].reshape(-1, shapes.SIZE, shapes.SIZE) > 0
    assert (bars.sum(2).max(1) >= 3).all()                    # horizontal: a row of >= 3


def test_table_ranks_full_rows_only_beside_torchcfm(bench, tmp_path, monkeypatch):
    ab, _ = bench
    own = tmp_path / "own_defaults.jsonl"
    own.write_text("".join(json.dumps({"target": "digits", "seed": s, "row": "torchcfm rf2",
                                       "w2": {"@1": 20.0 + s}}) + "\n" for s in range(3)))
    monkeypatch.setattr(ab, "HERE", tmp_path)
    results = tmp_path / "i.jsonl"
    rows = [("reflow default", s, 10.0 + 0.1 * s) for s in range(3)]
    rows += [("reflow lr 1e-3", s, 12.0 + 0.1 * s) for s in range(3)]
    rows += [("reflow no EMA", 0, 1.0)]                       # screened on one seed only
    results.write_text("".join(json.dumps({"part": "rounds", "seed": s, "row": n,
                                           "w2": {"@1": v}}) + "\n" for n, s, v in rows))
    text = ab.table(argparse.Namespace(results=str(results)))
    lines = {line.split(" |")[0]: line for line in text.splitlines() if line.startswith("| ")}
    assert lines["| reflow 0.2 default"].endswith("10.1 ± 0.1 * |")   # 0.2's recipe, said
    assert lines["| reflow lr 1e-3"].endswith("12.1 ± 0.1 |")
    assert lines["| reflow no EMA (1 seed, screen)"].endswith("1.000 ± 0.000 |")   # unmarked
    assert lines["| TorchCFM (rf2, own_defaults.py)"].endswith("21.0 ± 1.0 |")
    assert "One-step distillation" not in text               # no rows, no section


def test_chain_rows_are_tabled_per_image_set_beside_both_libraries_defaults(bench, tmp_path,
                                                                           monkeypatch):
    ab, _ = bench
    own = [{"target": t, "seed": s, "row": f"{lib} distill", "w2": {"@1": base + s}}
           for t, lib, base in (("digits", "torchcfm", 20.0), ("shapes", "torchcfm", 40.0),
                                ("shapes", "rectflow", 30.0)) for s in range(3)]
    (tmp_path / "own_defaults.jsonl").write_text("".join(json.dumps(r) + "\n" for r in own))
    monkeypatch.setattr(ab, "HERE", tmp_path)
    results = tmp_path / "i.jsonl"
    rows = [{"part": "chain", "seed": s, "row": "1-RF width 32: distill", "w2": {"@1": 9.0 + s},
             **extra} for s in range(3) for extra in ({}, {"target": "shapes"})]
    results.write_text("".join(json.dumps(r) + "\n" for r in rows))
    text = ab.table(argparse.Namespace(results=str(results)))
    digits = text[text.index("## Whole chain, digits: student"):]
    shapes = text[text.index("## Whole chain, shapes: student"):]
    digits = digits[:digits.index("## Whole chain, shapes")]
    assert "| 1-RF width 32 | 10.0 ± 1.0 * |" in digits and "21.0 ± 1.0 |" in digits
    assert "rectflow at its defaults" not in digits          # none measured on digits here
    assert "| TorchCFM (distill, own_defaults.py) | 41.0 ± 1.0 |" in shapes
    assert "| rectflow at its defaults (distill, own_defaults.py) | 31.0 ± 1.0 |" in shapes
    assert "| 1-RF width 32 | 10.0 ± 1.0 * |" in shapes


def test_fit_rows_get_their_own_unranked_table_per_image_set(bench, tmp_path, monkeypatch):
    ab, _ = bench
    monkeypatch.setattr(ab, "HERE", tmp_path)          # no own_defaults rows: none needed
    results = tmp_path / "i.jsonl"
    rows = [{"part": "fit", "target": "shapes", "seed": s, "row": name,
             "w2": {"FD of 2,000": base + s}}
            for s in range(3) for name, base in zip(ab.FIT, (17.0, 17.5, 21.0))]
    results.write_text("".join(json.dumps(r) + "\n" for r in rows))
    text = ab.table(argparse.Namespace(results=str(results)))
    assert "## Fit or generalisation, digits" not in text     # no rows, no section
    fit = text[text.index("## Fit or generalisation, shapes"):]
    assert "FD of 2,000 images each" in fit
    assert f"| {ab.FIT[0]} | 18.0 ± 1.0 |" in fit              # unranked: no * or ~
    assert f"| {ab.FIT[2]} | 22.0 ± 1.0 |" in fit
