"""Typed records: the one owner of each file format rectflow writes.

* :class:`RunCard` -- a model folder's ``config.json`` (and its weights' header);
* :class:`PairsPlan`, :class:`PairsManifest` -- a coupling dataset's ``plan.json`` and
  ``manifest.json``;
* :class:`EvalReport` -- ``eval.json``, the evaluation of one model;
* :class:`Comparison`, :class:`RunLog`, :class:`ResolvedRun` -- ``compare.json``, and the
  ``run.json`` / ``resolved.json`` of ``rectflow run``;
* :class:`SampleRecord`, :class:`TransportRecord` -- what sample and invert / translate /
  interpolate return (not files: their outputs are arrays and pictures);
* :mod:`.files` -- atomic, pickle-free reading and writing.

Every file carries ``format`` and ``version``; a newer version is refused with one line.
"""
from .card import RunCard, versions
from ..io.files import (atomic_write_bytes, atomic_write_json, load_tensors, read_json, save_tensors, sha256_file)
from .manifest import PairsManifest, PairsPlan, Shard, shard_name, sidecar_name
from .eval_report import EvalReport
from .run import Comparison, ResolvedRun, RunLog
from .outputs import SampleRecord, TransportRecord

__all__ = ["RunCard", "PairsManifest", "PairsPlan", "Shard", "EvalReport", "Comparison",
           "ResolvedRun", "RunLog", "SampleRecord", "TransportRecord", "versions",
           "shard_name", "sidecar_name", "atomic_write_bytes", "atomic_write_json",
           "load_tensors", "read_json", "save_tensors", "sha256_file"]
