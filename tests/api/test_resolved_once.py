"""Options are resolved at the entry (the API, `rectflow run`'s presets, a stage's plan), in
one function, and the stages that run a plan never resolve again."""
import ast
from pathlib import Path

import pytest

from rectflow.options import TrainConfig
from rectflow.stages import plan as planning

ROOT = Path(__file__).resolve().parents[2]
RESOLVERS = {"resolve", "train_config", "for_kind", "resolve_options"}
# who may call a resolver: the option tables themselves, the entries, and --help's defaults
ENTRIES = {"rectflow/options/__init__.py", "rectflow/stages/plan.py",
           "rectflow/stages/presets.py", "rectflow/api.py", "cli/options.py"}


def _calls(path: Path) -> set[str]:
    """Names of rectflow.options' resolvers this module imports."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").endswith("options"):
            names |= {a.name for a in node.names} & RESOLVERS
    return names


def test_only_the_entries_resolve_options():
    found = {p.relative_to(ROOT).as_posix(): _calls(p)
             for folder in ("rectflow", "cli") for p in (ROOT / folder).rglob("*.py")}
    outside = {p: names for p, names in found.items() if names and p not in ENTRIES}
    assert not outside, outside
    assert found["rectflow/stages/plan.py"] == {"train_config"}   # the one layering


def test_a_resolved_config_is_taken_as_it_is(tmp_path):
    """`rectflow run` passes each stage a TrainConfig resolved from its preset: the plan keeps
    it (no second resolution that could pull another layer in under it)."""
    cfg = TrainConfig(train_steps=7, batch_size=32, lr=0.0123, warmup=0)
    plan = planning.plan_train(tmp_path / "a", "moons", options=cfg)
    assert plan.config is cfg and plan.given["lr"] == 0.0123
    plan = planning.plan_train(tmp_path / "b", "moons", options={"lr": 0.0123})
    assert plan.config.lr == 0.0123 and plan.given == {"lr": 0.0123}
    assert plan.config.batch_size == TrainConfig().batch_size   # the rest from the layers


def test_plan_refuses_before_anything_is_read(tmp_path):
    with pytest.raises(Exception, match="coupling must be one of"):
        planning.plan_train(tmp_path / "c", "moons", coupling="nope")
    assert not (tmp_path / "c").exists()
