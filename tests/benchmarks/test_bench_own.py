"""The quality benchmarks of issue 19 (benchmarks/own_defaults.py, benchmarks/ablation.py)
run end to end on tiny budgets and turn their rows into tables with floors and tie marks.
They check the harness, not the figures."""
import argparse
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture()
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    import ablation
    import own_defaults
    import scoring
    monkeypatch.setattr(own_defaults, "BUDGET", {"2d": (3, 64, 256, ("rk4", 2)),
                                                 "image": (2, 8, 16, ("rk4", 1))})
    monkeypatch.setattr(own_defaults, "N", 64)
    monkeypatch.setattr(ablation, "STEPS", 3)
    monkeypatch.setattr(ablation, "PAIRS", 256)
    monkeypatch.setattr(ablation, "N", 64)
    return own_defaults, ablation, scoring


def test_own_defaults_rows_become_a_table_with_marks(bench, tmp_path):
    own, _, scoring = bench
    results = tmp_path / "own.jsonl"
    for seed in (0, 1):
        rows = own.run_rectflow("moons", seed, tmp_path / f"work{seed}")
        assert [k for k, _ in rows] == ["rectflow rf1", "rectflow rf2", "rectflow distill"]
        assert set(rows[0][1]) == {c[0] for c in scoring.COLUMNS} and set(rows[2][1]) == {"@1"}
        for key, w in rows:
            scoring.append(results, {"target": "moons", "seed": seed, "row": key, "w2": w})
    text = own.table(argparse.Namespace(results=str(results)))
    assert "## moons (floor " in text and "| rectflow | 1-RF |" in text
    assert text.count("*") >= 4            # a best in every column
    assert "| rectflow | 2-RF distilled, 1 step |" in text and "— |" in text
    assert "8gaussians" not in text        # no rows, no section


def test_a_single_seed_ranks_nothing(bench):
    _, _, scoring = bench
    from rectflow.core.metrics import Summary
    one = {"a": Summary(1.0, 0.0, 1), "b": Summary(2.0, 0.0, 1)}
    assert scoring.marks(one) == {"a": "", "b": ""}
    two = {"a": Summary(1.0, 0.01, 3), "b": Summary(1.01, 0.01, 3), "c": Summary(2.0, 0.01, 3)}
    assert scoring.marks(two) == {"a": "*", "b": "~", "c": ""}


def test_ablation_rows_run_through_rectflow_train(bench, tmp_path):
    _, ablation, _ = bench
    row = ablation.rf1_job("moons", 0, "cosine lr", tmp_path)
    assert row["row"] == "cosine lr" and set(row["w2"]) == {"@1", "@2", "@4", "@100 RK4"}
    card = (tmp_path / "rf1" / "config.json").read_text()
    assert '"lr_schedule": "cosine"' in card


def test_an_image_row_whose_network_the_cpu_fit_shrank_is_refused(bench):
    """A busy machine makes train halve the recipe's U-Net; that row would measure another
    model than the one reported, so the harness stops instead."""
    from types import SimpleNamespace

    from rectflow.models import unet_recipe
    own, _, _ = bench
    want = unet_recipe(1, 8)["width"]
    flow = lambda width: SimpleNamespace(card=SimpleNamespace(model={"width": width}))  # noqa: E731
    own._check_recipe_width(flow(want), "digits")   # the recipe's: passes
    with pytest.raises(SystemExit, match=f"width {want // 2}, not the recipe's {want}"):
        own._check_recipe_width(flow(want // 2), "shapes")


def test_image_rows_scored_at_another_sample_count_get_their_own_table(bench, monkeypatch):
    """``run --image-samples M`` scores M samples against the held-out images: FD's sampling
    noise falls with M, so those rows are never pooled or ranked with rows at 297 (older rows,
    written before the option, count as 297), and their floor is taken at M."""
    import torch
    own, _, scoring = bench
    drawn = []
    monkeypatch.setattr(scoring, "fd", lambda x, target: drawn.append(len(x)) or 1.0)
    still = lambda x, t: torch.zeros_like(x)   # noqa: E731 - a velocity that keeps x0
    assert scoring.score(still, "shapes", 64, 0, own.ONE_STEP, samples=40) == {"@1": 1.0}
    assert scoring.score(still, "shapes", 64, 0, own.ONE_STEP) == {"@1": 1.0}
    assert drawn == [40, scoring.DIGITS_N]
    floors = []
    monkeypatch.setattr(scoring, "floor",
                        lambda t, n, seed=0, samples=scoring.DIGITS_N: floors.append(samples)
                        or scoring.Summary(0.5, 0.1, 3))
    row = lambda seed, fd, **m: {"target": "shapes", "seed": seed, "row": "rectflow distill",  # noqa: E731
                                 "w2": {"@1": fd}, **m}
    rows = [row(0, 20.0), row(1, 22.0, samples=297), row(0, 9.0, samples=1500),
            row(1, 11.0, samples=1500)]
    text = "\n".join(own._tables(rows, not_run=False))
    assert "## shapes (floor" in text and "21.0 ± 1.4" in text
    assert "## shapes, 1,500 samples against the 297 held-out images (floor" in text
    assert "10.0 ± 1.4" in text and sorted(floors) == [297, 1500]


def test_image_pairs_reach_every_library_and_get_their_own_table(bench, tmp_path, monkeypatch):
    """``run --image-pairs P`` gives both libraries P pairs per round and records it; rows at
    another pair count (older rows count as the budget's) are tabled apart, never pooled."""
    own, _, scoring = bench
    calls = []

    def runner(lib):
        def go(t, s, work, samples, pairs):
            calls.append((lib, samples, pairs))
            return [(f"{lib} rf1", {"@1": 1.0})]
        return go
    monkeypatch.setattr(own, "RUNNERS", {lib: runner(lib) for lib in ("rectflow", "torchcfm")})
    results = tmp_path / "own.jsonl"
    for _ in range(2):                    # the second run finds its rows done and skips them
        own.run(argparse.Namespace(results=str(results), libs="rectflow,torchcfm",
                                   targets="shapes", seeds="0", image_samples=40,
                                   image_pairs=500, of=1, shard=0))
    assert calls == [("rectflow", 40, 500), ("torchcfm", 40, 500)]
    assert {r["pairs"] for r in scoring.read(results)} == {500}
    monkeypatch.setattr(scoring, "floor", lambda t, n, seed=0, samples=scoring.DIGITS_N:
                        scoring.Summary(0.5, 0.1, 3))
    row = lambda seed, fd, **m: {"target": "shapes", "seed": seed, "row": "rectflow distill",  # noqa: E731
                                 "w2": {"@1": fd}, **m}
    rows = [row(0, 20.0), row(1, 22.0, pairs=16), row(0, 9.0, pairs=500),
            row(1, 11.0, pairs=500), row(0, 5.0, pairs=500, samples=1500)]
    text = "\n".join(own._tables(rows, not_run=False))
    assert "## shapes (floor" in text and "21.0 ± 1.4" in text    # budget's 16 pairs pooled
    assert "## shapes, 500 pairs per round (floor" in text and "10.0 ± 1.4" in text
    assert "## shapes, 500 pairs per round, 1,500 samples against the 297 held-out" in text


def test_images_over_every_seed_pool_only_what_the_fresh_seeds_ran(bench, tmp_path,
                                                                    monkeypatch):
    own, _, scoring = bench
    monkeypatch.setattr(scoring, "floor", lambda t, n, seed=0, samples=scoring.DIGITS_N:
                        scoring.Summary(0.5, 0.1, 3))
    row = lambda seed, fd, **m: {"target": "shapes", "seed": seed, "row": "rectflow distill",  # noqa: E731
                                 "w2": {"@1": fd}, **m}
    results = tmp_path / "own_defaults.jsonl"
    for r in (row(0, 20.0), row(1, 22.0), row(0, 9.0, pairs=500), row(1, 11.0, pairs=500)):
        scoring.append(results, r)
    for r in (row(3, 24.0), row(4, 26.0)):
        scoring.append(tmp_path / "own_defaults_fresh.jsonl", r)
    text = own.table(argparse.Namespace(results=str(results)))
    pooled = text[text.index("## Images over every seed"):]
    assert "### shapes (floor" in pooled and "23.0 ± 2.6" in pooled   # seeds 0, 1, 3, 4
    assert "500 pairs" not in pooled and "## shapes, 500 pairs per round" in text
