"""Presets of the whole pipeline (``rectflow run``) as plain dicts, and TOML overrides.

A preset names the data and, per stage, only the options it changes; everything else comes
from the stage's own defaults (``TrainConfig()`` for train, :func:`rectflow.stages.reflow_defaults`
and :func:`~rectflow.stages.distill_defaults` for reflow and distill, ``CoupleConfig()`` and
``EvalConfig()``), so tuning those defaults tunes the presets too. :func:`resolve` fills in every
field, applies a ``--config`` TOML file on top, checks each key and type, and returns the
*resolved* config: the dict written beside a run as ``resolved.json``.

Sections: ``train`` (TrainConfig fields + ``coupling``), ``couple`` (CoupleConfig), ``reflow``
(TrainConfig), ``distill`` (TrainConfig without ``time_dist`` + ``k``), ``compare``
(EvalConfig); top-level keys ``data``, ``data_root``, ``download`` and a ``[model]`` table of
model overrides (``hidden``, ``depth``, ``width``...). ``time_dist`` is a name
(``"u-shaped"``) or a table (``{kind = "logit-normal", mean = 0.0, std = 1.0}``).
"""
from __future__ import annotations

import copy
import types
import typing
from dataclasses import asdict, fields
from pathlib import Path

from .couplings import COUPLINGS
from .errors import UserError
from .evaluation import EvalConfig
from .pairgen import CoupleConfig
from .path import TIME_DISTS, TimeDist
from .training import TrainConfig

SECTIONS = ("train", "couple", "reflow", "distill", "compare")
TOP = {"data": str, "data_root": str | None, "download": bool, "model": dict}

# CPU presets are sized for 2 cores (moons: about 90 s end to end, digits about 4 min); GPU presets are
# starting points for `accelerate launch` and need --data-root.
_TOY_2D = {"train": {"steps": 2000}, "couple": {"n": 50_000}, "reflow": {"steps": 1500},
           "distill": {"steps": 1000}, "compare": {"n": 1000}}
PRESETS: dict[str, dict] = {
    **{name: {"data": name, **_TOY_2D} for name in ("moons", "8gaussians", "checkerboard")},
    "digits": {"data": "digits", "model": {"width": 16},
               "train": {"steps": 2000, "batch_size": 128, "save_every": 500},
               "couple": {"n": 5000, "steps": 8, "batch_size": 1000},
               "reflow": {"steps": 1000, "batch_size": 128, "save_every": 500},
               "distill": {"steps": 1000, "batch_size": 128, "save_every": 500},
               "compare": {"n": 500, "path_steps": 32, "reference_rtol": 1e-3,
                           "reference_atol": 1e-3}},
    "mnist": {"data": "mnist",
              "train": {"steps": 60_000, "batch_size": 256, "lr": 2e-4, "warmup": 1000,
                        "ema_decay": 0.9999, "mixed_precision": "bf16", "save_every": 5000},
              "couple": {"n": 200_000, "solver": "heun", "steps": 18, "batch_size": 2048},
              "reflow": {"steps": 30_000, "batch_size": 256, "lr": 1e-4,
                         "loss": "pseudo-huber", "ema_decay": 0.9999,
                         "mixed_precision": "bf16", "save_every": 5000},
              "distill": {"steps": 20_000, "batch_size": 256, "lr": 1e-4,
                          "loss": "pseudo-huber", "ema_decay": 0.9999,
                          "mixed_precision": "bf16", "save_every": 5000},
              "compare": {"n": 10_000, "image_w2_subsample": 1000, "reference_rtol": 1e-3,
                          "reference_atol": 1e-3}},
    "cifar10": {"data": "cifar10",
                "train": {"steps": 400_000, "batch_size": 128, "lr": 2e-4, "warmup": 5000,
                          "ema_decay": 0.9999, "mixed_precision": "bf16",
                          "save_every": 10_000},
                "couple": {"n": 1_000_000, "solver": "heun", "steps": 18, "batch_size": 2048},
                "reflow": {"steps": 200_000, "batch_size": 256, "lr": 1e-4,
                           "loss": "pseudo-huber", "ema_decay": 0.9999,
                           "mixed_precision": "bf16", "save_every": 10_000},
                "distill": {"steps": 100_000, "batch_size": 256, "lr": 1e-4,
                            "loss": "pseudo-huber", "ema_decay": 0.9999,
                            "mixed_precision": "bf16", "save_every": 10_000},
                "compare": {"n": 10_000, "image_w2_subsample": 1000,
                            "reference_rtol": 1e-3, "reference_atol": 1e-3}},
}


def _defaults(distill_k: int = 1) -> dict:
    from .stages import distill_defaults, reflow_defaults
    distill = distill_defaults(distill_k).to_json()
    distill.pop("time_dist")
    return {"data": None, "data_root": None, "download": False, "model": {},
            "train": {**TrainConfig().to_json(), "coupling": "independent"},
            "couple": asdict(CoupleConfig()),
            "reflow": reflow_defaults().to_json(),
            "distill": {**distill, "k": distill_k},
            "compare": EvalConfig().to_json()}


def _hints(section: str) -> dict:
    cls = {"train": TrainConfig, "reflow": TrainConfig, "distill": TrainConfig,
           "couple": CoupleConfig, "compare": EvalConfig}[section]
    hints = typing.get_type_hints(cls)
    out = {f.name: hints[f.name] for f in fields(cls)}
    if section == "train":
        out["coupling"] = str
    if section == "distill":
        out.pop("time_dist")
        out["k"] = int
    return out


_TYPE_WORDS = {int: "an integer", float: "a number", str: "a string", bool: "true or false",
               dict: "a table"}


def _check(where: str, value, hint):
    """``value`` as ``hint`` wants it (ints accepted for floats), else a one-line UserError."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        return _check(where, value, next(a for a in args if a is not type(None)))
    if hint is TimeDist:
        d = {"kind": value} if isinstance(value, str) else value
        if not isinstance(d, dict):
            raise UserError(f"{where} must be a name or a table, got {value!r}")
        try:
            td = TimeDist(**d)
        except TypeError as e:
            raise UserError(f"{where}: {e}") from None
        if td.kind not in TIME_DISTS:
            raise UserError(f"{where}: unknown time distribution {td.kind!r}; "
                            f"choose from {', '.join(TIME_DISTS)}")
        return td.to_json()
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or not value or \
                any(isinstance(v, bool) or not isinstance(v, int) for v in value):
            raise UserError(f"{where} must be a list of integers, got {value!r}")
        return list(value)
    ok = (isinstance(value, bool) if hint is bool else
          isinstance(value, (int, float)) and not isinstance(value, bool) if hint is float else
          isinstance(value, int) and not isinstance(value, bool) if hint is int else
          isinstance(value, hint))
    if not ok:
        raise UserError(f"{where} must be {_TYPE_WORDS.get(hint, hint.__name__)}, got "
                        f"{value!r} ({type(value).__name__})")
    return float(value) if hint is float else value


def _apply(base: dict, overrides: dict, source: str) -> None:
    for key, value in overrides.items():
        if key in SECTIONS:
            if not isinstance(value, dict):
                raise UserError(f"{source}: [{key}] must be a table of options")
            hints = _hints(key)
            for opt, v in value.items():
                if opt not in hints:
                    raise UserError(f"{source}: [{key}] has no option {opt!r} "
                                    f"(known: {', '.join(hints)})")
                base[key][opt] = _check(f"{source}: [{key}] {opt}", v, hints[opt])
        elif key in TOP:
            v = _check(f"{source}: {key}", value, TOP[key])
            base[key] = {**base[key], **v} if key == "model" else v
        else:
            raise UserError(f"{source}: unknown key {key!r} (known: "
                            f"{', '.join([*TOP, *SECTIONS])})")


def read_toml(path: str | Path) -> dict:
    try:
        import tomllib
    except ImportError:   # Python 3.10
        raise UserError("--config needs Python 3.11 or newer (tomllib)") from None
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--config {path} does not exist")
    try:
        return tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"--config {path} is not valid TOML ({e})") from None


def resolve(name: str, config_file: str | Path | None = None,
            overrides: dict | None = None) -> dict:
    """The full config of a run: stage defaults < preset ``name`` < ``config_file`` <
    ``overrides`` (a dict of the same shape, e.g. from command-line flags)."""
    if name not in PRESETS:
        raise UserError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    preset = copy.deepcopy(PRESETS[name])
    layers = [(preset, f"preset {name}")]
    if config_file is not None:
        layers.append((read_toml(config_file), str(config_file)))
    if overrides:
        layers.append((overrides, "options"))
    k = 1
    for layer, _ in layers:   # distill's defaults depend on k
        k = layer.get("distill", {}).get("k", k)
    resolved = _defaults(k if isinstance(k, int) and not isinstance(k, bool) else 1)
    for layer, source in layers:
        _apply(resolved, layer, source)
    resolved["preset"] = name
    validate(resolved)
    return resolved


def validate(resolved: dict) -> None:
    """Check values, not just types, before any stage runs (one-line UserErrors)."""
    if resolved["train"]["coupling"] not in COUPLINGS:
        raise UserError(f"[train] coupling must be one of {', '.join(COUPLINGS)}")
    if resolved["distill"]["k"] < 1:
        raise UserError("[distill] k must be >= 1")
    for section in ("train", "reflow", "distill"):
        train_config(resolved, section).validate()
    precisions = {resolved[s]["mixed_precision"] for s in ("train", "reflow", "distill")}
    if len(precisions) > 1:   # Accelerate fixes it once per process
        raise UserError("[train], [reflow] and [distill] must use the same mixed_precision "
                        f"in one run, got {', '.join(sorted(precisions))}")
    couple_config(resolved).validate()
    eval_config(resolved).validate()


# ------------------------------------------------------------------- resolved -> stage configs
def train_config(resolved: dict, section: str = "train") -> TrainConfig:
    d = {k: v for k, v in resolved[section].items() if k not in ("coupling", "k")}
    if section == "distill":
        d["time_dist"] = {"kind": "grid", "k": resolved["distill"]["k"]}
    return TrainConfig.from_json(d)


def couple_config(resolved: dict) -> CoupleConfig:
    return CoupleConfig(**resolved["couple"])


def eval_config(resolved: dict) -> EvalConfig:
    d = dict(resolved["compare"])
    d["nfes"] = tuple(d["nfes"])
    return EvalConfig(**d)

