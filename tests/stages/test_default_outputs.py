"""One default-output rule (rectflow.stages.outputs), used by the CLI and the API alike."""
import ast
from pathlib import Path

import pytest

from rectflow.api import default_out
from rectflow.errors import UserError

ROOT = Path(__file__).resolve().parents[2]


def test_each_verb_writes_where_its_help_says(tmp_path):
    model, pairs = tmp_path / "rf1", tmp_path / "pairs1"
    assert default_out("train", "moons") == Path("checkpoints/moons/rf1")
    assert default_out("train", "data/ring.npy") == Path("checkpoints/ring/rf1")
    assert default_out("train", "shapes/") == Path("checkpoints/shapes/rf1")
    assert default_out("couple", model) == tmp_path / "rf1-pairs"
    assert default_out("reflow", pairs) == tmp_path / "reflow"
    assert default_out("distill", pairs) == tmp_path / "distill"
    assert default_out("sample", model) == tmp_path / "rf1-samples.npy"
    assert default_out("run", None, preset="moons") == Path("checkpoints/moons-run")
    assert default_out("run", "data/ring.npy") == Path("checkpoints/ring-run")
    with pytest.raises(UserError, match="no default output"):
        default_out("explore", model)


def test_compare_never_replaces_an_existing_folder_unless_told(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "run"
    run.mkdir()
    assert default_out("compare", [run]) == run / "compare"
    (run / "compare").mkdir()
    assert default_out("compare", [run]) == run / "compare-2"
    assert default_out("compare", [run], overwrite=True) == run / "compare"
    a, b = tmp_path / "a", tmp_path / "b"
    assert default_out("compare", [a, b]) == Path("compare")


# the output root is an option's default; the rule built on it is stages/outputs
HOME = ("rectflow/options/__init__.py", "rectflow/stages/outputs.py")


def _default_paths(path: Path) -> list[str]:
    """String constants naming a default output ("checkpoints", "-pairs", ...) in a module."""
    hits = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and not \
                node.value.startswith("--") and (
                node.value == "checkpoints" or node.value.endswith(("-pairs", "-samples.npy",
                                                                     "-run"))):
            hits.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.value!r}")
    return hits


def test_no_other_module_builds_a_default_output():
    """The rule lives in one module: the CLI and the API ask it, never spell a path."""
    found = [hit for folder in ("rectflow", "cli") for p in sorted((ROOT / folder).rglob("*.py"))
             if p.relative_to(ROOT).as_posix() not in HOME
             for hit in _default_paths(p)]
    assert not found, found
