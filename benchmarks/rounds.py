"""Alternating rounds for same-process A/B timings (imported by the throughput scripts).

On a shared machine the load drifts; timing the baseline and rectflow in turn, with the order
swapped every round, lets drift hit both alike, and the spread of the per-round ratios shows
how much it did. Report the median ratio with its min-max and interquartile range.
"""
from __future__ import annotations

import statistics
from typing import Callable


def alternate(baseline: Callable[[], object], ours: Callable[[], object], rounds: int
              ) -> list[tuple[object, object]]:
    """Run both ``rounds`` times, baseline first in even rounds and second in odd ones;
    returns (baseline result, ours result) per round."""
    out = []
    for r in range(rounds):
        if r % 2 == 0:
            b = baseline()
            o = ours()
        else:
            o = ours()
            b = baseline()
        out.append((b, o))
    return out


def spread(ratios: list[float]) -> str:
    """"median 0.953 (min-max 0.921-0.970, IQR 0.940-0.961, 5 rounds)"."""
    rs = sorted(ratios)
    if len(rs) >= 2:
        q1, _, q3 = statistics.quantiles(rs, n=4, method="inclusive")
    else:
        q1 = q3 = rs[0]
    return (f"median {statistics.median(rs):.3f} (min-max {rs[0]:.3f}-{rs[-1]:.3f}, "
            f"IQR {q1:.3f}-{q3:.3f}, {len(rs)} rounds)")
