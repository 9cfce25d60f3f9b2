"""Smoke budgets: ``RECTFLOW_SMOKE=1`` shrinks every budget to a tiny one, so the README's
commands and the benchmark scripts run end to end in seconds (tests/test_readme_commands.py,
tests/test_bench_smoke.py). The variable is read here only; every stage config is validated
(``rectflow.options``: its ``validate`` calls :func:`cap`) and sample counts pass
through :func:`tiny`. Figures made under it are meaningless."""
from __future__ import annotations

import os
import sys

ENV = "RECTFLOW_SMOKE"
CAPS = {"TrainConfig": {"train_steps": 4, "batch_size": 64},
        "CoupleConfig": {"n": 256, "steps": 4, "ot_subsample": 64},
        "EvalConfig": {"n": 64, "seeds": 1, "path_steps": 8, "ot_subsample": 64,
                       "image_w2_subsample": 64, "adaptive": False},
        "samples": 64, "classifier_epochs": 1}
_said: list[bool] = []


def on() -> bool:
    """True when RECTFLOW_SMOKE is set to anything but '' or '0'; says so once, on stderr."""
    active = os.environ.get(ENV, "") not in ("", "0")
    if active and not _said:
        _said.append(True)
        print(f"rectflow: {ENV} is set: budgets capped to tiny values (train steps "
              f"{CAPS['TrainConfig']['train_steps']}, pairs {CAPS['CoupleConfig']['n']}, eval n "
              f"{CAPS['EvalConfig']['n']} on one seed without dopri5, samples "
              f"{CAPS['samples']}); figures are meaningless", file=sys.stderr)
    return active


def tiny(what: str, value: int) -> int:
    """``value`` capped to the smoke budget of ``what`` (e.g. "samples") when smoke is on."""
    return min(value, CAPS[what]) if on() else value


def cap(cfg) -> None:
    """Cap the budgets of a validated stage config in place when smoke is on. A capped batch
    stays a multiple of grad_accum."""
    caps = CAPS.get(type(cfg).__name__, {})
    if not (caps and on()):
        return
    for k, v in caps.items():
        setattr(cfg, k, v if isinstance(v, bool) else min(getattr(cfg, k), v))
    if "batch_size" in caps and cfg.batch_size % cfg.grad_accum:
        cfg.batch_size = cfg.grad_accum
