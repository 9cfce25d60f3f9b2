"""Every command's --help shows ``[default: X]`` for every option that has a default.

Options built from rectflow.options carry their default in their help text; Rich markup once
swallowed that ``[default: 3000]`` as a tag, so --help showed no defaults at all (issue 23).
Commands are discovered from the typer app, so a new command is covered as it is added."""
import re

import pytest
from typer.testing import CliRunner

from rectflow.cli.main import COMMANDS as NAMES, app, load_command
from rectflow.options import COUPLE, EVAL, TRAIN

COMMANDS = {name: load_command(name) for name in NAMES}   # the lazy app builds each on use
TABLES = {o.name: o for o in (*TRAIN, *COUPLE, *EVAL)}
ROW = re.compile(r"^│\s{1,4}(-[-\w]*)")     # an option's first line: its flag near the border


def help_rows(name: str) -> dict[str, str]:
    """The rendered --help of ``name``: each option's flags and text, by its first flag."""
    res = CliRunner().invoke(app, [name, "--help"], env={"COLUMNS": "400", "NO_COLOR": "1"})
    assert res.exit_code == 0, res.output
    rows, flag = {}, None
    for line in res.output.splitlines():
        m = ROW.match(line)
        if m:
            flag = m.group(1)
            rows[flag] = ""
        if flag and line.startswith("│"):
            rows[flag] += " " + " ".join(line.strip("│ ").split())
        elif not line.startswith("│"):
            flag = None
    return rows


def expected_default(p) -> str | None:
    """The text after '[default: ' that --help must show for ``p`` ('' for any), or None
    when it has no default."""
    declared = re.search(r"\\\[default: ([^\]]*)\]", p.help or "")
    if declared:                       # a library option: its help says its default
        return declared.group(1)
    opt = TABLES.get(p.name)
    if opt is not None and opt.cli_flag in p.opts and (p.help or "").startswith(opt.help):
        return ""                      # a library option must declare it (a regression)
    if p.default is not None and p.show_default is not False:
        return ""                      # typer's own
    return None


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_help_shows_every_default(name):
    rows = help_rows(name)
    checked = 0
    for p in COMMANDS[name].params:
        if getattr(p, "param_type_name", "") != "option" or p.name == "help":
            continue
        want = expected_default(p)
        if want is None:
            continue
        row = rows.get(p.opts[0])
        assert row is not None, f"{name}: no --help row for {p.opts[0]}"
        assert f"[default: {want}" in row, f"{name} {p.opts[0]}: no [default: {want}...] in {row!r}"
        checked += 1
    assert checked, f"{name}: no option with a default"


def test_library_defaults_are_shown_as_values():
    rows = help_rows("reflow")
    assert "[default: 2000]" in rows["--train-steps"]          # the stage's own default
    assert "[default: u-shaped a=4.0]" in rows["--time-dist"]
    assert "[default: none]" in rows["--huber-c"]
    assert "[default: 1,2,4,8,16]" in help_rows("eval")["--steps"]


def test_a_default_that_depends_on_the_data_says_both():
    """--help shows what a run really uses: the 2-D recipe's lr and t, the image recipe's batch
    (not the one number of the option's declaration)."""
    rows = help_rows("train")
    assert "[default: 0.003 on vectors, 0.001 on images]" in rows["--lr"]
    assert "[default: 2048 on vectors, 128 on images]" in rows["--batch-size"]
    assert "logit-normal on vectors, uniform on images]" in rows["--time-dist"]
