"""Presets of the whole pipeline (``rectflow run``) as plain dicts, and TOML overrides.

A preset names the data and, per stage, only the options it changes; everything else comes
from the defaults for the kind of data (:data:`rectflow.options.KIND_DEFAULTS`: the image
recipe for images) and the stage's own defaults (``TrainConfig()`` for train, :func:`rectflow.stages.train.reflow_defaults`
and :func:`~rectflow.stages.train.distill_defaults` for reflow and distill, ``CoupleConfig()`` and
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

from ..data import kind_of_data

import copy
from pathlib import Path

from ..training.pairs import COUPLINGS
from ..errors import OptionError, UserError
from ..options import (CoupleConfig, EvalConfig, Opt, TrainConfig, kind_defaults,
                       renamed_options, resolve as resolve_options, table_of,
                       train_config as stage_config)

SECTIONS = ("train", "couple", "reflow", "distill", "compare")
TOP = {"data": str, "data_root": str | None, "download": bool, "model": dict,
       "with_diffusion": bool, "with_meanflow": bool}

# CPU presets are sized for an idle 2-core machine (docs/pipeline.md, docs/images.md: moons under
# 3 minutes and digits under 30 minutes of wall time; much longer when other jobs share the cores); GPU presets are
# starting points for `accelerate launch` and need --data-root. The 2-D pairs use RK4 with 16
# steps: a 1-RF's paths are smooth in t, and its pairs move by less than the W2 floor.
_TOY_2D = {"train": {"train_steps": 1500}, "couple": {"n": 50_000, "steps": 16},
           "reflow": {"train_steps": 1000}, "distill": {"train_steps": 800}, "compare": {"n": 1000}}
def _gpu(data: str, *, train: tuple[int, int, int], pairs: int, reflow: int, distill: int,
         save_every: int) -> dict:
    """A GPU preset: the paper-scale recipe (bf16, EMA 0.9999, Heun x 18 pairs, reflow and
    distill at lr 1e-4 with 2-RF++'s pseudo-Huber loss); ``train`` is (steps, batch, warm-up)."""
    steps, batch, warmup = train
    common = {"ema_decay": 0.9999, "mixed_precision": "bf16", "save_every": save_every}
    on_pairs = {"batch_size": 256, "lr": 1e-4, "loss": "pseudo-huber", **common}
    return {"data": data,
            "train": {"train_steps": steps, "batch_size": batch, "lr": 2e-4, "warmup": warmup,
                      **common},
            "couple": {"n": pairs, "solver": "heun", "steps": 18, "batch_size": 2048},
            "reflow": {"train_steps": reflow, **on_pairs},
            "distill": {"train_steps": distill, **on_pairs},
            "compare": {"n": 10_000, "image_w2_subsample": 1000, "reference_rtol": 1e-3,
                        "reference_atol": 1e-3}}


PRESETS: dict[str, dict] = {
    **{name: {"data": name, **_TOY_2D} for name in ("moons", "8gaussians", "checkerboard")},
    # rf1..distill plus a diffusion baseline with rf1's budget and rf2d reflowed from its pairs
    "moons-diffusion": {"data": "moons", **_TOY_2D, "with_diffusion": True},
    # sizes only: batch, lr, model and evaluation come from the image recipe
    # (options.KIND_DEFAULTS["image"], models.unet_recipe)
    "digits": {"data": "digits", "train": {"train_steps": 2000}, "couple": {"n": 5000, "steps": 8},
               "reflow": {"train_steps": 1000}, "distill": {"train_steps": 1000}},
    # rf1, rf2, rf3 and the student at batch 512, beside MeanFlow from scratch (mf1) and on
    # round-2 pairs (mf2) at the same total of training steps, teachers' included
    "moons-meanflow": {"data": "moons", "with_meanflow": True,
                       "train": {"train_steps": 1500, "batch_size": 512},
                       "couple": {"n": 20_000}, "reflow": {"train_steps": 1000, "batch_size": 512},
                       "distill": {"train_steps": 1000, "batch_size": 512},
                       "compare": {"n": 1000, "steps": [1, 2, 4, 100], "adaptive": False}},
    # the MeanFlow comparison on images: digits with the image recipe, beside mf1 and mf2
    "digits-meanflow": {"data": "digits", "with_meanflow": True, "train": {"train_steps": 2000},
                        "couple": {"n": 5000, "steps": 8}, "reflow": {"train_steps": 1000},
                        "distill": {"train_steps": 1000}},
    # class-conditional digits: labels through every stage, pairs solved with guidance 1.5
    # (baked into rf2, rf3 and the student), compared at guidance 0, 1 and 2
    "digits-cond": {"data": "digits", "model": {"width": 16},
                    "train": {"train_steps": 2000, "batch_size": 128, "save_every": 500,
                              "conditional": True},
                    "couple": {"n": 5000, "steps": 8, "batch_size": 1000, "guidance": 1.5},
                    "reflow": {"train_steps": 1000, "batch_size": 128, "save_every": 500},
                    "distill": {"train_steps": 1000, "batch_size": 128, "save_every": 500},
                    "compare": {"n": 500, "path_steps": 32, "reference_rtol": 1e-3,
                                "reference_atol": 1e-3, "guidance": "0,1,2"}},
    "mnist": _gpu("mnist", train=(60_000, 256, 1000), pairs=200_000, reflow=30_000,
                  distill=20_000, save_every=5000),
    "cifar10": _gpu("cifar10", train=(400_000, 128, 5000), pairs=1_000_000, reflow=200_000,
                    distill=100_000, save_every=10_000),
}


# the preset of a --data given without one: its own preset when it names one, else by kind
PRESET_FOR_KIND = {"vector": "moons", "image": "digits"}


def preset_for(data: str | None) -> str:
    """The preset ``rectflow run --data DATA`` uses when no ``--preset`` is given: the preset of
    that name when DATA is a preset's own data (``moons``, ``digits``...), else the recipe for
    its kind of data (:data:`PRESET_FOR_KIND`), its budgets sized for a CPU."""
    if data is None:
        return "moons"
    if data in PRESETS and PRESETS[data]["data"] == data:
        return data
    return PRESET_FOR_KIND[kind_of_data(data)]


def _defaults(distill_k: int = 1, kind: str = "vector") -> dict:
    distill = stage_config("distill", kind=kind).to_json()
    distill.pop("time_dist")
    return {"data": None, "data_root": None, "download": False, "model": {},
            "train": {**stage_config("train", kind=kind).to_json(), "coupling": "independent"},
            "couple": resolve_options(CoupleConfig, kind_defaults(kind, "couple")).to_json(),
            "reflow": stage_config("reflow", kind=kind).to_json(),
            "distill": {**distill, "k": distill_k},
            "compare": resolve_options(EvalConfig, kind_defaults(kind, "compare")).to_json()}


_EXTRA = {"train": {"coupling": Opt("coupling", str, "independent", "", choices=COUPLINGS)},
          "distill": {"k": Opt("k", int, 1, "", lo=1, hi=1000)}}


def option_table(section: str) -> dict[str, Opt]:
    cls = {"train": TrainConfig, "reflow": TrainConfig, "distill": TrainConfig,
           "couple": CoupleConfig, "compare": EvalConfig}[section]
    out = {**table_of(cls), **_EXTRA.get(section, {})}
    if section == "distill":
        out.pop("time_dist")
    return out


def as_json(value):
    from ..core.path import TimeDist
    return value.to_json() if isinstance(value, TimeDist) else \
        list(value) if isinstance(value, tuple) else value


def _apply(base: dict, overrides: dict, source: str) -> None:
    for key, value in overrides.items():
        if key in SECTIONS:
            if not isinstance(value, dict):
                raise UserError(f"{source}: [{key}] must be a table of options")
            opts = option_table(key)
            if key in ("train", "reflow", "distill"):
                value = renamed_options(value, f"{source}: [{key}]", stacklevel=4)
            for name, v in value.items():
                if name not in opts:
                    raise UserError(f"{source}: [{key}] has no option {name!r} "
                                    f"(known: {', '.join(opts)})")
                try:
                    base[key][name] = as_json(opts[name].check(v))
                except OptionError as e:
                    raise UserError(f"{source}: [{key}] {e}") from None
        elif key in TOP:
            v = _check_top(f"{source}: {key}", value, TOP[key])
            base[key] = {**base[key], **v} if key == "model" else v
        else:
            raise UserError(f"{source}: unknown key {key!r} (known: "
                            f"{', '.join([*TOP, *SECTIONS])})")


def _check_top(where: str, value, hint):
    if value is None and hint == (str | None):
        return None
    want = dict if hint is dict else bool if hint is bool else str
    if not isinstance(value, want):
        raise UserError(f"{where} must be {'a table' if want is dict else want.__name__}, "
                        f"got {value!r} ({type(value).__name__})")
    return value


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
    k, data = 1, None
    for layer, _ in layers:   # distill's defaults depend on k, every stage's on the data
        k = layer.get("distill", {}).get("k", k)
        data = layer.get("data", data)
    resolved = _defaults(k if isinstance(k, int) and not isinstance(k, bool) else 1,
                         kind_of_data(data if isinstance(data, str) else None))
    for layer, source in layers:
        _apply(resolved, layer, source)
    resolved["preset"] = name
    validate(resolved)
    return resolved


def validate(resolved: dict) -> None:
    """Check values across sections, before any stage runs (one-line UserErrors)."""
    from ..errors import CheckpointError
    from ..models import check_overrides
    try:
        check_overrides(resolved["model"])
    except CheckpointError as e:
        raise UserError(f"[model]: {e}") from None
    for section in ("train", "reflow", "distill"):
        train_config(resolved, section)
    precisions = {resolved[s]["mixed_precision"] for s in ("train", "reflow", "distill")}
    if len(precisions) > 1:   # Accelerate fixes it once per process
        raise UserError("[train], [reflow] and [distill] must use the same mixed_precision "
                        f"in one run, got {', '.join(sorted(precisions))}")
    couple_config(resolved)
    eval_config(resolved)


# ------------------------------------------------------------------- resolved -> stage configs
def train_config(resolved: dict, section: str = "train") -> TrainConfig:
    d = {k: v for k, v in resolved[section].items() if k not in ("coupling", "k")}
    if section == "distill":
        d["time_dist"] = {"kind": "grid", "k": resolved["distill"]["k"]}
    return resolve_options(TrainConfig, d, where=(f"[{section}]",))


def couple_config(resolved: dict) -> CoupleConfig:
    return resolve_options(CoupleConfig, resolved["couple"], where=("[couple]",))


def eval_config(resolved: dict) -> EvalConfig:
    return resolve_options(EvalConfig, resolved["compare"], where=("[compare]",))
