"""Every option of every stage, declared once: name, type, default, bounds, help.

The CLI builds its flags from these tables, ``--config`` TOML files and presets are checked
against them, and the configs the stages take (:class:`TrainConfig`, :class:`CoupleConfig`,
:class:`EvalConfig`) are dataclasses made from them. An option the user did not give is unset
(``None`` in :func:`resolve`'s layers) and is filled from, in order: the saved run (on resume,
or from the teacher when a stage continues a lineage), the ``--config`` file, the preset, the
stage's defaults for this kind of data, and the option's own default.

Errors name the option in Python terms (``batch_size``); the CLI shows the flag instead.
"""
from __future__ import annotations

from dataclasses import field, fields, make_dataclass

from .. import smoke
from ..core.path import TIME_DISTS, TimeDist  # noqa: F401 - TIME_DISTS: part of this face
from ..errors import OptionError, UserError  # noqa: F401 - OptionError: part of this face
from .opt import BIG, Opt, _num, _time_dist  # noqa: F401 - Opt and BIG are part of this face

# ------------------------------------------------------------------------------ the tables
LOSSES = ("l2", "pseudo-huber")
OBJECTIVES = ("flow", "diffusion", "meanflow")
PRECISIONS = ("no", "fp16", "bf16")
TRACKERS = ("tensorboard", "wandb", "mlflow", "comet_ml", "aim", "clearml", "dvclive")
SOLVERS = ("euler", "heun", "rk4", "dopri5")
FIXED_SOLVERS = ("euler", "heun", "rk4")

TRAIN = (
    Opt("train_steps", int, 3000, "Optimizer steps.", lo=1, hi=BIG),
    Opt("batch_size", int, 2048, "Global batch of one optimizer step (split over processes).",
        lo=1, hi=10**7),
    Opt("lr", float, 1e-3, "Adam learning rate (default: train 3e-3 on vectors, 1e-3 on "
        "images; reflow 3e-4, or 1e-3 for an image flow; distill 3e-4).", above=0, hi=10.0),
    Opt("warmup", int, 100, "Linear learning-rate warm-up steps.", lo=0, hi=BIG),
    Opt("lr_schedule", str, "constant", "Learning rate after the warm-up: constant, or cosine "
        "(decays to about 0 at the run's last step).", choices=("constant", "cosine")),
    Opt("grad_clip", float, 1.0, "Clip the gradient norm to this (0: off).", lo=0, hi=1e6),
    Opt("ema_decay", float, 0.999, "Decay of the weights' moving average.", lo=0, below=1),
    Opt("grad_accum", int, 1, "Micro-batches accumulated per optimizer step.", lo=1, hi=4096),
    Opt("mixed_precision", str, "no", "Mixed precision through Accelerate (fp16 needs a GPU; "
        "bf16 also runs on CPUs).", choices=PRECISIONS),
    Opt("compile", bool, False, "torch.compile the model's training forward (needs a C++ "
        "compiler on CPU; weights are saved from the plain module)."),
    Opt("channels_last", bool, False, "Images: model and batches in channels-last memory "
        "format (faster convolutions on recent GPUs)."),
    Opt("loss", str, "l2", "Regression loss.", choices=LOSSES),
    Opt("huber_c", float | None, None, "Pseudo-Huber c (default 0.00054*sqrt(D), as 2-RF++).",
        above=0, hi=1e6),
    Opt("time_dist", TimeDist, "uniform", "Distribution of t: uniform, logit-normal, u-shaped "
        "(default: train logit-normal on vectors, uniform on images; reflow u-shaped)."),
    Opt("objective", str, "flow", "What the network learns: flow (rectified flow), diffusion "
        "(VP baseline), meanflow (average velocity).", choices=OBJECTIVES),
    Opt("schedule", str, "cosine", "diffusion: noise schedule.", choices=("cosine", "linear")),
    Opt("prediction", str, "v", "diffusion: what the network predicts.", choices=("v", "eps")),
    Opt("mf_equal_share", float, 0.75, "meanflow: share of samples with r = t (MeanFlow: 0.75).",
        lo=0, hi=1),
    Opt("mf_time_mean", float, 0.4, "meanflow: mean of the logit-normal r and t "
        "(MeanFlow's -0.4 in rectflow's time direction).", lo=-10, hi=10),
    Opt("mf_time_std", float, 1.0, "meanflow: std of the logit-normal r and t.", above=0, hi=10),
    Opt("mf_power", float, 1.0, "meanflow: adaptive loss weight power p (MeanFlow: 1).", lo=0,
        hi=4),
    Opt("pair_drop", float, 0.0, "Drop this share of stored pairs with the largest |x1 - x0| "
        "(Re-MeanFlow: 0.1).", lo=0, below=1),
    Opt("conditional", bool, False, "train: a class-conditional model, labels from the data "
        "(reflow and distill follow their teacher)."),
    Opt("label_dropout", float, 0.1, "Conditional: share of labels replaced by 'no label', so "
        "one model also samples unconditionally (classifier-free guidance).", lo=0, below=1),
    Opt("seed", int, 0, "Seed of every random draw.", lo=0, hi=2**62),
    Opt("source", str | None, None, "Source at t = 0: a dataset as for data (a 2-D toy, an "
        "array file, an image folder) or one class of a labelled one (digits:3), unpaired "
        "with the data; unset: N(0, I). Reflow and distill keep their teacher's."),
    Opt("save_every", int, 1000, "Save a resumable snapshot every N steps.", lo=1, hi=BIG),
    Opt("log_every", int, 50, "Log the loss every N steps.", lo=1, hi=BIG),
    Opt("log_with", str | None, None, "Also log through an Accelerate tracker.", choices=TRACKERS),
)

COUPLE = (
    Opt("n", int, 100_000, "Number of (source, endpoint) pairs.", lo=1, hi=10**10, short="-n"),
    Opt("solver", str, "rk4", "ODE solver.", choices=SOLVERS),
    Opt("steps", int, 32, "Steps of a fixed-grid solver.", lo=1, hi=100_000),
    Opt("rtol", float, 1e-5, "dopri5 relative tolerance.", lo=1e-12, hi=1.0),
    Opt("atol", float, 1e-5, "dopri5 absolute tolerance.", lo=1e-12, hi=1.0),
    Opt("seed", int, 0, "Seed of the source draws (pairs are byte-identical for a seed).",
        lo=0, hi=2**62),
    Opt("batch_size", int, 4096, "Paths solved at once, in whole eval chunks (memory only).",
        lo=1, hi=10**7),
    Opt("shard_size", int, 50_000, "Pairs per shard file.", lo=1, hi=10**8),
    Opt("eval_chunk", int, 1024, "Rows per model call (fixed, so pairs do not depend on the "
        "batch size).", lo=1, hi=10**6),
    Opt("use_ema", bool, True, "Use the teacher's EMA weights.", off="--no-ema"),
    Opt("metrics_subsample", int | None, None, "Track path metrics on the first N pairs only.",
        lo=1, hi=10**10),
    Opt("ot_subsample", int, 1000, "Pairs (the first by index) for the exact OT cost.",
        lo=2, hi=20_000),
    Opt("guidance", float, 1.0, "Conditional teacher: classifier-free guidance w of the "
        "pairs (v = v_uncond + w (v_cond - v_uncond); 1 plain conditional).", lo=0, hi=100),
)

EVAL = (
    Opt("steps", tuple, (1, 2, 4, 8, 16), "Comma-separated solver step counts.", lo=1,
        hi=100_000),
    Opt("solver", str, "euler", "Fixed-grid solver of the per-steps figures.",
        choices=FIXED_SOLVERS),
    Opt("n", int, 2000, "Samples (and held-out points, up to the split's size).", lo=2,
        hi=10**7, short="-n"),
    Opt("seed", int, 0, "Seed of the source draws and the reference data.", lo=0, hi=2**62),
    Opt("seeds", int, 3, "Evaluation seeds (seed, seed+1, ...): figures are mean ± std over "
        "them, and differences within the spread are ties.", lo=1, hi=100),
    Opt("path_steps", int, 100, "Euler steps of the fine grid for path metrics.", lo=1,
        hi=100_000),
    Opt("adaptive", bool, True, "Add the adaptive dopri5 reference."),
    Opt("reference_rtol", float, 1e-5, "dopri5 reference: relative tolerance.", lo=1e-12,
        hi=1.0, flag="--rtol"),
    Opt("reference_atol", float, 1e-5, "dopri5 reference: absolute tolerance.", lo=1e-12,
        hi=1.0, flag="--atol"),
    Opt("ot_subsample", int, 2000, "Endpoints on which the exact OT cost is computed.", lo=2,
        hi=20_000),
    Opt("image_w2_subsample", int, 500, "Images: W2 in pixel space on this many.", lo=2,
        hi=100_000),
    Opt("use_ema", bool, True, "Evaluate the EMA weights.", off="--no-ema"),
    Opt("fid_weights", str | None, None, "Local safetensors of torchvision's inception_v3."),
    Opt("guidance", str, "1", "Conditional models: comma-separated guidance weights to "
        "evaluate (the first, or 1 when listed, leads the tables)."),
)


# --------------------------------------------------------------------------- configs
def _config_class(name: str, table: tuple[Opt, ...], doc: str):
    def default(o: Opt):
        if o.base_type is TimeDist:
            return field(default_factory=lambda: _time_dist(o, o.default))
        return field(default=o.default)
    cls = make_dataclass(name, [(o.name, o.type, default(o)) for o in table],
                         namespace={"OPTIONS": table, "validate": _validate, "to_json": _to_json,
                                    "from_json": classmethod(_from_json),
                                    "replace": _replace})
    cls.__doc__ = doc
    cls.__module__ = __name__
    return cls


def _validate(self) -> None:
    """Check and normalise every field (types, bounds, choices); under RECTFLOW_SMOKE=1 cap
    the budgets to tiny ones (every config a stage runs is validated)."""
    for o in self.OPTIONS:
        setattr(self, o.name, o.check(getattr(self, o.name)))
    smoke.cap(self)


def _to_json(self) -> dict:
    out = {}
    for o in self.OPTIONS:
        v = getattr(self, o.name)
        out[o.name] = v.to_json() if isinstance(v, TimeDist) else list(v) if isinstance(v, tuple) else v
    return out


def _from_json(cls, d: dict):
    names = {o.name for o in cls.OPTIONS}
    unknown = sorted(set(d) - names)
    if unknown:
        raise UserError(f"unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
    obj = cls(**d)
    obj.validate()
    return obj


def _replace(self, **changes):
    d = {f.name: getattr(self, f.name) for f in fields(self)}
    d.update(changes)
    obj = type(self)(**d)
    obj.validate()
    return obj


TrainConfig = _config_class("TrainConfig", TRAIN, "Options of train, reflow and distill.")
CoupleConfig = _config_class("CoupleConfig", COUPLE, "Options of couple.")
EvalConfig = _config_class("EvalConfig", EVAL, "Options of eval and compare.")

# Stage defaults that differ from the option's own (reflow: 2-RF++'s U-shaped t, a lower lr).
STAGE_DEFAULTS: dict[str, dict] = {
    "train": {},
    "reflow": {"train_steps": 2000, "lr": 3e-4, "warmup": 0, "time_dist": {"kind": "u-shaped", "a": 4.0}},
    "distill": {"train_steps": 2000, "lr": 3e-4, "warmup": 0, "time_dist": {"kind": "grid", "k": 1},
                "label_dropout": 0.0},   # a student bakes in its pairs' guidance
}


# Defaults per kind of data ("vector": point clouds and toy data, "image": [C, H, W]), below
# the user's options and above the stage defaults. Images: a batch that fits a CPU (2048 is
# a 2-D batch) and snapshots often enough for runs of minutes per step-thousand; the model
# part of the image recipe (U-Net width by resolution) is models.default_model_config, the
# evaluation part below ("stage_eval": what a training stage evaluates when it ends, sized
# to a small fraction of its training time: on 2 cores a 16x16 U-Net step at batch 128 costs
# ~0.7 s, 200 samples through ~20 solver steps ~15 s). "couple" and "compare" feed presets.
KIND_DEFAULTS: dict[str, dict[str, dict]] = {
    "vector": {},
    "image": {
        "train": {"batch_size": 128, "save_every": 500},
        "reflow": {"batch_size": 128, "save_every": 500},
        "distill": {"batch_size": 128, "save_every": 500},
        "couple": {"batch_size": 512, "eval_chunk": 256},
        "compare": {"n": 500, "path_steps": 32, "reference_rtol": 1e-3,
                    "reference_atol": 1e-3},
        "stage_eval": {"n": 200, "path_steps": 16, "steps": (1, 2, 4, 8)},
    },
}
DATA_KINDS = tuple(KIND_DEFAULTS)


def data_kind(shape) -> str:
    """The kind of data of one sample's ``shape``: ``image`` ([C, H, W]) or ``vector``; the
    one definition, a key of :data:`KIND_DEFAULTS`."""
    return "image" if len(shape) == 3 else "vector"

# Defaults per kind of data, objective and stage, above the kind's: a flow-matching 1-RF on
# vectors trains with lr 3e-3 and logit-normal t, the best recipe at every step count in
# benchmarks/ABLATION.md (checkerboard and 8gaussians, 3 seeds, 800 steps); an image reflow
# with lr 1e-3, whose 2-RF was better at one step than with 3e-4 on each seed (digits, width
# 32; distillation is better at 3e-4 on each seed: benchmarks/IMAGE_ABLATION.md).
# Diffusion and MeanFlow were not ablated and keep the plain defaults.
RECIPES: dict[tuple[str, str, str], dict] = {
    ("vector", "flow", "train"): {"lr": 3e-3, "time_dist": "logit-normal"},
    ("image", "flow", "reflow"): {"lr": 1e-3},
}


def kind_defaults(kind: str | None, section: str) -> dict:
    """The defaults of ``section`` (a stage, ``couple``, ``compare`` or ``stage_eval``) for a
    kind of data; empty for an unknown or absent kind."""
    return dict(KIND_DEFAULTS.get(kind or "", {}).get(section, {}))


# The folder under the working directory where train and run write when no output is given
# (every default output: rectflow.stages.outputs); evaluation caches its feature networks in
# its .features subfolder.
OUTPUT_ROOT = "checkpoints"

# CPU threads of torch and BLAS for one command (rectflow.machine.threads.configure); not a stage
# option: it changes speed, not results, so it is not recorded with a run.
THREADS = Opt("threads", int | None, None, "CPU threads of torch and BLAS (default: "
              "OMP_NUM_THREADS when set, else 1 or the machine's cores, whichever the first "
              "training steps measure faster).", lo=1, hi=4096)


def table_of(cls_or_table) -> dict[str, Opt]:
    """Options by name, of a config class or a table."""
    table = getattr(cls_or_table, "OPTIONS", cls_or_table)
    return {o.name: o for o in table}


# Options of TrainConfig that had another name before (old -> new): the old name is still
# read, with one deprecation line where the user wrote it (records are upgraded silently).
# "steps" now means solver steps only (sample, eval, couple); optimizer steps are train_steps,
# as the CLI's --train-steps always said.
RENAMED = {"steps": "train_steps"}


def renamed_options(options: dict | None, where: str = "options", stacklevel: int = 2,
                    warn: bool = True) -> dict | None:
    """``options`` (of train, reflow or distill) with old option names replaced by the new
    ones (:data:`RENAMED`), saying so once per name as a FutureWarning unless ``warn`` is
    False. Giving both names is refused."""
    if not options or not any(old in options for old in RENAMED):
        return options
    out = dict(options)
    for old, new in RENAMED.items():
        if old not in out:
            continue
        if new in out:
            raise UserError(f"{where}: give {new} only ({old} is its old name)")
        out[new] = out.pop(old)
        if warn:
            import warnings
            warnings.warn(f"{where}: {old!r} is now {new!r} (optimizer steps; {old!r} will "
                          "stop working in a later release)", FutureWarning,
                          stacklevel=stacklevel + 1)
    return out


def resolve(cls, *layers: dict | None, where: tuple[str, ...] = ()):
    """Build a ``cls`` config from layers, most important first; a key missing or ``None`` in
    one layer is taken from the next. Unknown keys are refused (``where`` names each layer
    for the message); a :class:`TrainConfig` layer may use an old name (:data:`RENAMED`)."""
    known = table_of(cls)
    values: dict = {}
    if cls is TrainConfig:
        layers = tuple(renamed_options(layer, where[i] if i < len(where) else "options",
                                       stacklevel=3) for i, layer in enumerate(layers))
    for i, layer in enumerate(layers):
        for k, v in (layer or {}).items():
            if k not in known:
                src = where[i] if i < len(where) else "options"
                raise UserError(f"{src}: unknown option {k!r} (known: {', '.join(known)})")
            if v is not None and k not in values:
                values[k] = v
    obj = cls(**{k: known[k].check(v) for k, v in values.items()})
    obj.validate()
    return obj


def for_kind(cls, section: str, kind: str | None, *layers: dict | None,
             where: tuple[str, ...] = ()):
    """A couple or evaluation config (``section`` "couple" or "compare"): the given layers
    over the defaults of this ``kind`` of data (:data:`KIND_DEFAULTS`), so an image model is
    coupled and evaluated with the image recipe without any flag."""
    return resolve(cls, *layers, kind_defaults(kind, section),
                   where=(*where, f"{kind} defaults"))


def train_config(stage: str = "train", *layers: dict | None, where: tuple[str, ...] = (),
                 kind: str | None = None):
    """A :class:`TrainConfig` for ``stage``: the given layers over the recipe of this kind of
    data and objective (:data:`RECIPES`), the defaults of this ``kind`` of data
    (:data:`KIND_DEFAULTS`) and the stage's defaults."""
    objective = next((layer["objective"] for layer in layers
                      if layer and layer.get("objective") is not None), "flow")
    recipe = RECIPES.get((kind or "", objective, stage), {})
    where = (*where, *("options",) * (len(layers) - len(where)))   # unnamed layers: options
    return resolve(TrainConfig, *layers, recipe, kind_defaults(kind, stage),
                   STAGE_DEFAULTS[stage],
                   where=(*where, f"{kind} {objective} recipe", f"{kind} defaults",
                          f"{stage} defaults"))
