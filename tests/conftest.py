import os
import sys

import pytest

# Tests live in folders that mirror rectflow/ (core, data, training, stages, analysis, safety,
# ...); the shared helpers (support.py, outputs_support.py) stay here, importable from each.
sys.path.insert(0, os.path.dirname(__file__))

os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture
def cli(capsys):
    """Run the rectflow CLI in-process; returns (exit code, stdout, stderr)."""
    from rectflow.cli.main import main

    def run(*argv):
        try:
            main([str(a) for a in argv])
            code = 0
        except SystemExit as e:
            code = e.code
        out = capsys.readouterr()
        return code, out.out, out.err
    return run


@pytest.fixture(scope="session")
def moons_rf1(tmp_path_factory):
    """A 1-rectified flow on moons trained with every default of `rectflow train` (shared by
    the quality test and the reflow tests)."""
    from rectflow.cli.main import main
    out = tmp_path_factory.mktemp("moons") / "rf1"
    with pytest.raises(SystemExit) as e:
        main(["train", "--out", str(out)])
    assert e.value.code == 0
    return out
