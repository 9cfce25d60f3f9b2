import os

import pytest

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
