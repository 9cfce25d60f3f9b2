"""rectflow: rectified flows, reflow and distillation on Accelerate.

The conventions (time direction, shapes, names) are documented in :mod:`rectflow.path`.
"""
__version__ = "0.1.0"


def _source_tree_cli() -> None:
    """The top-level ``cli/`` folder installs as ``rectflow.cli``. When ``rectflow`` is imported
    straight from a source checkout instead (``python -m pytest`` or ``python -m
    rectflow.cli.main`` run in the repository root put it first on ``sys.path``), map that
    folder to ``rectflow.cli`` the same way, so both ways of running agree."""
    import importlib.util
    import sys
    from pathlib import Path

    here = Path(__file__).resolve().parent
    cli = here.parent / "cli"
    if (here / "cli").is_dir() or not (cli / "__init__.py").is_file() \
            or "rectflow.cli" in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(
        "rectflow.cli", cli / "__init__.py", submodule_search_locations=[str(cli)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["rectflow.cli"] = module
    spec.loader.exec_module(module)


_source_tree_cli()
