"""Every benchmark script runs end to end on a tiny budget, so none can rot unnoticed.

Scripts are found by glob (any benchmarks/*.py with a ``__main__`` block); each declares its
tiny run in ``SMOKE_RUNS`` (argument lists run in order in a scratch folder ``{tmp}``; one
starting with ``-m`` runs that module, e.g. to make a model first) and is run under
RECTFLOW_SMOKE=1, which caps every rectflow budget. A script without SMOKE_RUNS fails the
first test. Scripts comparing against optional peers (the ``bench`` extra) must still run
their rectflow part and say why a peer row is missing."""
from __future__ import annotations

import ast
import sys
from pathlib import Path

from smoke_support import ROOT, failure, run, run_all

BENCH = ROOT / "benchmarks"
SCRIPTS = sorted(p for p in BENCH.glob("*.py") if 'if __name__ == "__main__":' in p.read_text())


# Every script, by name, so a reader (or a search for a script's name) finds where it runs;
# the glob must find exactly these, so a new script is added here and a removed one leaves.
RUN = ("ablation", "couple_throughput", "dopri5_smoothness", "explorer_page",
       "files_vs_generator", "gpu_pipeline", "image_ablation", "image_folder",
       "meanflow_vs_distill", "own_defaults", "peers", "soak_couple", "threads_under_load",
       "train_throughput", "transport_examples")
# modules without a __main__ block, run through the scripts that import them
IMPORTED = {"peer_adapters": "peers", "rounds": "train_throughput", "scoring": "own_defaults",
            "shapes": "scoring"}


def smoke_runs(script: Path) -> list[list[str]] | None:
    for node in ast.parse(script.read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "SMOKE_RUNS"
                                                for t in node.targets):
            return ast.literal_eval(node.value)
    return None


def test_every_script_declares_a_tiny_run():
    assert [p.stem for p in SCRIPTS] == sorted(RUN)   # the glob finds exactly these
    modules = {p.stem for p in BENCH.glob("*.py")} - set(RUN)
    assert modules == set(IMPORTED), modules
    for module, user in IMPORTED.items():   # each is imported by a script (or module) run
        source = (BENCH / f"{user}.py").read_text()
        assert f"import {module}" in source or f"from {module} import" in source, (module, user)
    missing = [p.name for p in SCRIPTS if not smoke_runs(p)]
    assert not missing, f"benchmark scripts without SMOKE_RUNS (a tiny run): {missing}"


def test_every_script_runs_on_a_tiny_budget(tmp_path):
    def job(script: Path):
        def go() -> list[str]:
            work = tmp_path / script.stem
            work.mkdir()
            for args in smoke_runs(script):
                args = [a.replace("{tmp}", str(work)) for a in args]
                argv = [sys.executable, *args] if args[0] == "-m" else [sys.executable, str(script), *args]
                proc = run(argv, cwd=work, timeout=600)
                if proc.returncode != 0:
                    return [failure(f"{script.name} {' '.join(args)}", proc)]
            return []
        return go

    failures, seconds = run_all({p.name: job(p) for p in SCRIPTS})
    assert not failures, "\n\n".join(failures)
    assert set(seconds) == {p.name for p in SCRIPTS}
