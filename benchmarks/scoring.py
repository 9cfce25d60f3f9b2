"""What the quality benchmarks share: fresh target points, the noise floor, exact W2 (FD on
images) at a few step counts, mean ± std over seeds, and the tie rule of ``rectflow compare``.

On the 2-D targets every figure is an exact W2 (optimal assignment) between ``n`` samples and
``n`` fresh target points, in the data's own units, beside the floor: W2 between two
independent draws of ``n`` target points. On digits it is the Fréchet distance in the features
of rectflow's digits classifier (:mod:`rectflow.analysis.features`) between 297 samples (or
``samples``: more lowers FD's sampling noise) and the 297 held-out images, beside its floor: FD
between held-out and as many training images; on
the generated shapes (``shapes.py``) the same, with that classifier trained on the shapes'
labels. Rows whose difference is within ``2·sqrt(s_a² + s_b²)`` of the seeds' spread
are ties (:func:`rectflow.core.metrics.tie_groups`)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import torch

from rectflow.data import load_dataset
from rectflow.core.seeding import noise
from rectflow.analysis.evaluate import reference_data
from rectflow.core.metrics import Summary, metric_floor, summarize, tie_groups, w2
from rectflow.core.solvers import solve

# (label, solver, steps): the columns of every quality table
COLUMNS = (("@1", "euler", 1), ("@2", "euler", 2), ("@4", "euler", 4), ("@100 RK4", "rk4", 100))
IMAGE_COLUMNS = (*COLUMNS[:3], ("@32 RK4", "rk4", 32))
IMAGES = ("digits", "shapes")   # shapes: benchmarks/shapes.py, generated
DIGITS_N = 297   # the held-out digits (and test shapes): samples are scored at the same n
IMAGE_SHAPE = (1, 8, 8)
Velocity = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def reference(target: str, n: int, seed: int) -> torch.Tensor:
    """``n`` fresh points of a 2-D toy target (data units), seeded by ``seed``."""
    return reference_data(load_dataset({"name": target}, "test"), n, seed)


def floor(target: str, n: int, seed: int = 0, samples: int = DIGITS_N) -> Summary:
    """The floor at ``n`` 2-D points; on images FD between ``samples`` training images and the
    held-out ones."""
    if target in IMAGES:
        from rectflow.analysis.features import fd_floor
        return fd_floor(_features(target)[0], _all(target, "test"), _all(target, "train"),
                        DIGITS_N, seed, repeats=3, samples=samples)
    ds = load_dataset({"name": target}, "test")
    return metric_floor(lambda k, g: ds.sample(k, g), n, w2, seed=seed, repeats=3)


def metric(target: str) -> str:
    return "FD" if target in IMAGES else "W2"


def columns_of(target: str):
    return IMAGE_COLUMNS if target in IMAGES else COLUMNS


def data_spec(target: str) -> dict:
    """The ``load_dataset`` spec of a target (shapes: its generated training array)."""
    if target == "shapes":
        import shapes
        return {"name": "file", "path": str(shapes.path("train"))}
    return {"name": target}


def data_arg(target: str) -> str:
    """What ``rectflow.train`` is given as data for a target."""
    return data_spec(target).get("path", target)


def _all(target: str, split: str) -> torch.Tensor:
    """Every image of a split (model space)."""
    if target == "shapes":
        import shapes
        return shapes.labelled(split)[0]
    ds = load_dataset({"name": target}, split)
    return ds.take(torch.arange(len(ds)))


_FEATURES: dict = {}


def _features(target: str):
    """The feature extractor of an image target and its held-out images' feature statistics:
    rectflow's digits classifier (trained once, cached beside this script), or the same
    classifier trained on the generated shapes and their labels (seeded, a few seconds)."""
    if target not in _FEATURES:
        from rectflow.analysis.features import TRAIN, Extractor, classifier, fit_classifier
        if target == "shapes":
            import shapes
            net, _ = fit_classifier("shapes", *shapes.labelled("train"),
                                    *shapes.labelled("test"), TRAIN["digits"])
        else:
            net, _ = classifier({"name": target}, Path(__file__).resolve().parent / ".features")
        ex = Extractor(net.features)
        _FEATURES[target] = (ex, ex.stats(_all(target, "test")))
    return _FEATURES[target]


def fd(x: torch.Tensor, target: str) -> float:
    """FD between images ``x`` (model space, clamped to [-1, 1]) and the held-out images."""
    from rectflow.analysis.features import frechet_distance
    ex, ref = _features(target)
    return frechet_distance(ex.stats(x.clamp(-1, 1)), ref)


@torch.no_grad()
def score(velocity: Velocity, target: str, n: int, seed: int, columns=None,
          to_data: Callable[[torch.Tensor], torch.Tensor] = lambda x: x,
          samples: int = DIGITS_N) -> dict[str, float]:
    """W2 (FD on images) of the samples of ``velocity`` (x at t=0 is N(0, I), data at t=1),
    at each (label, solver, steps) column: ``n`` samples against ``n`` fresh points on 2-D,
    ``samples`` samples against the held-out images on images; ``to_data`` maps model space
    to data units (2-D only: images are scored in model space, [-1, 1])."""
    columns = columns or columns_of(target)
    if target in IMAGES:
        x0 = noise(samples, IMAGE_SHAPE, seed, "bench-noise")
        return {label: fd(solve(velocity, x0, method=solver, steps=k).x, target)
                for label, solver, k in columns}
    x0, ref = noise(n, (2,), seed, "bench-noise"), reference(target, n, seed)
    return {label: w2(to_data(solve(velocity, x0, method=solver, steps=k).x), ref)
            for label, solver, k in columns}


def summaries(rows: list[dict], key: str) -> dict[str, dict[str, Summary]]:
    """``{row[key]: {column: Summary over the rows' seeds}}`` of rows holding ``w2`` dicts."""
    by: dict[str, list[dict]] = {}
    for r in rows:
        by.setdefault(r[key], []).append(r["w2"])
    return {k: {c: summarize([v[c] for v in vs]) for c in vs[0]} for k, vs in by.items()}


def marks(results: dict[str, Summary], floor_: Summary | None = None) -> dict[str, str]:
    """``*`` for the best, ``~`` for a tie with it, '' otherwise (one seed: no marks)."""
    if not results or min(s.k for s in results.values()) < 2:
        return {k: "" for k in results}
    groups = tie_groups(results, floor_)
    best = groups[0]
    return {k: ("*" if k == best[0] else "~" if k in best else "") for k in results}


def cell(s: Summary, mark: str = "") -> str:
    digits = 3 if s.mean < 10 else 1
    return f"{s.mean:.{digits}f} ± {s.std:.{digits}f}{(' ' + mark) if mark else ''}"


def append(path: Path, row: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")


def read(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def score_flow(flow, target: str, n: int, seed: int, columns=None,
               samples: int = DIGITS_N) -> dict[str, float]:
    """:func:`score` of a loaded :class:`rectflow.Flow` (its objective's velocity, its
    normalisation back to data units)."""
    from rectflow.data.base import Normalization
    norm = Normalization(**(flow.card.normalization or {}))
    return score(flow.velocity, target, n, seed, columns, norm.to_raw, samples)


def bench_cli(doc: str, results: Path, markdown: Path, run: Callable, table: Callable,
              run_args: Callable, argv=None) -> None:
    """The command line both quality benchmarks share: ``run`` (sharded over processes, rows
    appended to ``results``) and ``table`` (``--write``: into ``markdown``)."""
    import argparse
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--shard", type=int, default=0)
    r.add_argument("--of", type=int, default=1)
    r.add_argument("--threads", type=int, default=1, help="torch threads per process")
    run_args(r)
    t = sub.add_parser("table")
    t.add_argument("--write", action="store_true", help=f"write benchmarks/{markdown.name}")
    for q in (r, t):
        q.add_argument("--results", default=str(results))
    args = p.parse_args(argv)
    if args.cmd == "run":
        torch.set_num_threads(args.threads)
        run(args)
    else:
        text = table(args)
        print(text)
        if args.write:
            markdown.write_text(text + "\n")
