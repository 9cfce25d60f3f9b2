"""Every JSON rectflow reads or writes goes through its one typed record (issue 24): the source
is scanned (nothing imported) for ``json.load/loads/dump/dumps``, which only the record base
(:mod:`rectflow.io.record`) and the one writer (:mod:`rectflow.io.files`) may call; and the
one-line records (marker, lock holder, metrics line, weights header) keep the bytes they had
before they were records, and read what older rectflows wrote."""
from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
JSON_CALLS = {"load", "loads", "dump", "dumps"}
# module -> why it may call json itself
ALLOWED = {
    "rectflow/io/record.py": "the typed record base: the one parser of rectflow's JSON",
    "rectflow/io/files.py": "the one writer of whole JSON files (what Record.write calls)",
    "rectflow/machine/steptime.py": "a canonical dict key in memory, no file",
    "rectflow/analysis/explore.py": "script text inside an HTML page, never read back",
}


def json_calls(source: str) -> list[int]:
    """Lines of ``source`` that call json's load/loads/dump/dumps, however json is imported."""
    tree = ast.parse(source)
    names, found = set(), []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.asname or a.name for a in node.names if a.name == "json"}
        elif isinstance(node, ast.ImportFrom) and node.module == "json":
            found += [node.lineno for a in node.names if a.name in JSON_CALLS]
    found += [node.lineno for node in ast.walk(tree)
              if isinstance(node, ast.Attribute) and node.attr in JSON_CALLS
              and isinstance(node.value, ast.Name) and node.value.id in names]
    return sorted(found)


def test_the_scan_sees_every_way_of_calling_json():
    src = ("import json\nimport json as j\nfrom json import loads, JSONDecodeError\n"
           "json.dumps({})\nj.load(f)\nx.loads('1')\nloads('1')\n")
    assert json_calls(src) == [3, 4, 5]


def test_only_the_record_base_and_the_one_writer_touch_json():
    found = {}
    for f in sorted((ROOT / "rectflow").rglob("*.py")):
        rel = f.relative_to(ROOT).as_posix()
        lines = json_calls(f.read_text())
        if lines and rel not in ALLOWED:
            found[rel] = lines
    assert not found, f"JSON parsed or written outside a record: {found}"
    for rel in ALLOWED:
        assert (ROOT / rel).is_file(), f"{rel} is allowed json but no longer exists"


def _one_line_records():
    from rectflow.io.lock import Holder
    from rectflow.io.remove import Marker
    from rectflow.records.card import WeightsHeader
    from rectflow.records.snapshot import MetricsLine
    token = "0123456789abcdef" * 2
    return [
        (Marker, {"kind": "model", "rectflow": "0.3.0", "created": "2026-01-01T00:00:00+00:00",
                  "token": token}),
        (Marker, {"kind": "snapshot", "rectflow": "0.3.0",
                  "created": "2026-01-01T00:00:00+00:00", "token": token, "run": token}),
        (Holder, {"pid": 12, "host": "box", "since": "2026-01-01T00:00:00+01:00",
                  "command": "rectflow train --out run"}),
        (MetricsLine, {"step": 5, "loss": 0.25, "lr": 0.001, "samples_per_s": 1234.5}),
        (WeightsHeader, {"model": {"type": "mlp", "hidden": 8}, "shape": [2],
                         "objective": {"name": "flow"}}),
    ]


@pytest.mark.parametrize("i", range(5))
def test_a_one_line_record_writes_the_bytes_it_wrote_before_and_reads_them(i):
    cls, fields = _one_line_records()[i]
    rec = cls(**fields)
    assert rec.line() == (json.dumps(fields) + "\n").encode()
    assert cls.from_text(rec.line()) == rec


def test_older_markers_still_read():
    from rectflow.io.remove import Marker
    assert Marker.from_text(b'{"kind": "model"}\n').token is None      # before tokens
    assert Marker.from_text('{"kind": "run", "future": 1}').kind == "run"  # a newer key


@pytest.mark.parametrize("text,field", [
    ('{"kind": 3}', "kind"), ('{"kind": "model", "token": 5}', "token"),
    ('{"kind": "model", "token": "abc"}', "token"), ('{"token": "' + "a" * 32 + '"}', "kind"),
])
def test_a_malformed_marker_is_one_line_naming_the_file_and_field(text, field):
    from rectflow.errors import CheckpointError
    from rectflow.io.remove import Marker
    with pytest.raises(CheckpointError) as e:
        Marker.from_text(text, "/x/.rectflow")
    assert "/x/.rectflow" in str(e.value) and field in str(e.value)
    assert "\n" not in str(e.value)
    assert Marker.maybe(text) is None


@pytest.mark.parametrize("text", [
    '{"pid": "1", "host": "h", "since": "s", "command": "c"}',
    '{"pid": 1, "host": "h", "since": "s", "command": "c", "extra": 1}',
    '{"pid": 1, "host": "h", "since": "s"}', "[1]", "\xff", ""])
def test_a_lock_holder_is_exactly_the_record_rectflow_writes(text):
    from rectflow.io.lock import Holder
    assert Holder.maybe(text.encode("latin-1")) is None


def test_the_file_list_names_its_first_bad_line():
    from rectflow.io.remove import FileList
    names, why = FileList.parse(b"config.json\nstate/step-1/meta.json\n", "F")
    assert names == {"config.json", "state/step-1/meta.json"} and why is None
    for bad in (b"../x", b"/etc/passwd", b"a//b", b"\xff", b"a\0b", b"./a"):
        names, why = FileList.parse(b"ok\n" + bad + b"\n", "F")
        assert names == {"ok"} and why == "F is malformed: line 2 is not a path relative to " \
                                           "its folder", bad


def test_lineage_reads_every_field_that_fits_and_skips_the_others():
    """What an input names guards it from being overwritten: a field of another type names
    nothing, but does not hide what the other fields name."""
    from rectflow.io.lineage import Named
    rec = Named.from_text(b'{"teacher": "x", "parent": {"pairs": "../p", "init": 3}, "data": 5,'
                          b' "source": {"data": {"path": "/d"}}}')
    assert rec.links() == [("pairs", "../p")]
    assert rec.data_specs() == [(None, "its data"), ({"path": "/d"}, "its data source")]
