"""rectflow against its peers and against the machine's limit, in one reproducible command.

    python benchmarks/peers.py --write     # full run (about 20 min on 2 cores) -> RESULTS.md
    python benchmarks/peers.py --quick     # the same harness on tiny budgets (< 3 min)
    python benchmarks/peers.py --own run   # each library at its OWN defaults and network,
                                           # over seeds (benchmarks/own_defaults.py)

This mode measures loop speed: with one network and one stream, quality agrees by construction.
``--own`` measures quality: each library with its own network and documented defaults.

One protocol for every method: source N(0, I); targets from ``rectflow.data.toy``; the same
network (rectflow's MLP: 3 hidden layers of 256, SiLU, sinusoidal time features), built from the
same seeded initial weights; Adam at a constant learning rate, batch 2048, no clipping, EMA 0.999
evaluated; the same number of steps per stage; the same (x0, x1, t) stream for the
independent-coupling rows. rectflow rows go through its public API (``rectflow.stages.train``) in a
temporary folder; peer rows run the peer's own objective in a plain loop
(``peer_adapters.fit_peer``). Every trained network is then scored by rectflow's solver and
metrics on the same noise and the same fresh target points, so the numbers compare.

A peer that is not installed, or whose API fails on a piece of the protocol, keeps its row with
the reason. Install the peers with ``pip install -e ".[bench]"``.
"""
from __future__ import annotations

import argparse
import copy
import datetime
import math
import os
import platform
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peer_adapters as pa  # noqa: E402  (a helper beside this script, not a package)

from rectflow.records import checkpoint as ckpt
from rectflow.stages import train as stages  # noqa: E402
from rectflow.data import load_dataset  # noqa: E402
from rectflow.core.seeding import noise
from rectflow.core.metrics import path_metrics
from rectflow.analysis.evaluate import reference_data  # noqa: E402
from rectflow.core.metrics import w2  # noqa: E402
from rectflow.models import build_model, default_model_config  # noqa: E402
from rectflow.stages.couple import CoupleConfig  # noqa: E402
from rectflow.core.path import TimeDist, interpolate, target_velocity  # noqa: E402
from rectflow.core.seeding import derive_seed, generator  # noqa: E402
from rectflow.core.solvers import solve  # noqa: E402
from rectflow.training.loop import TrainConfig  # noqa: E402

HERE = Path(__file__).resolve().parent
TARGETS = ("moons", "8gaussians", "checkerboard")
NFES = (1, 2, 4, 8)
SHAPE = (2,)

# key -> label, in table order; rectflow rows first
METHODS = {
    "rf1": "rectflow rf1",
    "rf2": "rectflow rf2 (reflow)",
    "rf3": "rectflow rf3 (reflow)",
    "distill": "rectflow rf2 + distill, 1 step",
    "rf-ot": "rectflow OT coupling",
    "icfm": "TorchCFM I-CFM",
    "otcfm": "TorchCFM OT-CFM",
    "meta": "Meta flow_matching CondOT",
    "lucid": "lucidrains RectifiedFlow",
    "lucid-reflow": "lucidrains Reflow",
}
RECTFLOW = ("rf1", "rf2", "rf3", "distill", "rf-ot")
PEERS = ("icfm", "otcfm", "meta", "lucid", "lucid-reflow")
OT_ROWS = ("rf-ot", "otcfm")
DISTRIBUTIONS = {"torchcfm": "torchcfm", "flow_matching": "flow-matching",
                 "rectified_flow_pytorch": "rectified-flow-pytorch"}


@dataclass
class Protocol:
    steps: int              # training steps of every stage
    ot_steps: int           # the two minibatch-OT rows (exact assignments per 256-pair block)
    pairs: int              # pairs per reflow round
    eval_n: int             # noise and fresh target points scored per method
    limit_steps: int        # steps of the bare loop that measures the machine's limit
    targets: tuple[str, ...] = TARGETS
    batch_size: int = 2048
    lr: float = 1e-3
    ema_decay: float = 0.999
    seed: int = 0
    pair_solver: str = "rk4"
    pair_steps: int = 8
    path_steps: int = 100
    ot_subsample: int = 1000
    ref_tol: float = 1e-5

    def recipe(self, steps: int) -> pa.Recipe:
        return pa.Recipe(steps, self.batch_size, self.lr, self.ema_decay, self.seed)

    def train_config(self, steps: int, time_dist: TimeDist = TimeDist()) -> TrainConfig:
        return TrainConfig(train_steps=steps, batch_size=self.batch_size, lr=self.lr, warmup=0,
                           grad_clip=0.0, ema_decay=self.ema_decay, seed=self.seed,
                           time_dist=time_dist, save_every=steps, log_every=min(50, steps))


FULL = dict(steps=400, ot_steps=400, pairs=20_000, eval_n=2000, limit_steps=40)
QUICK = dict(steps=10, ot_steps=10, pairs=2048, eval_n=500, limit_steps=5)
QUICK_THREADS = 1   # on a busy 2-core CPU, 2 torch threads run the evaluation 4-6x slower


@dataclass
class Row:
    target: str
    key: str
    status: str = "ok"          # ok | failed | not installed | skipped
    message: str = ""
    steps: int = 0
    w2: dict = field(default_factory=dict)   # str(NFE) -> W2
    ref_w2: float | None = None
    ref_nfe: int | None = None
    straightness: float | None = None
    transport_cost: float | None = None
    ot_cost: float | None = None
    train_samples_per_s: float | None = None
    train_ratio: float | None = None          # / bare loop samples/s
    pairs_per_s: float | None = None
    pair_nfe: int | None = None
    pairs_ratio: float | None = None          # pairs/s x NFE / raw forward rows/s
    train_wall_s: float | None = None
    pairs_wall_s: float | None = None

    @property
    def method(self) -> str:
        return METHODS[self.key]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def log_row(row: Row, started: float) -> None:
    what = (f"W2@1 {row.w2['1']:.3f}, train {row.train_wall_s:.1f} s" if row.status == "ok"
            else f"{row.status}: {row.message}")
    log(f"[{row.target}] {row.method}: {what}; {time.perf_counter() - started:.1f} s in all")


def _reason(e: BaseException) -> str:
    text = f"{type(e).__name__}: {e}".replace("\n", " ").strip()
    return text if len(text) <= 160 else text[:157] + "..."


def fresh_net(seed: int) -> torch.nn.Module:
    """rectflow's default network for 2-D data, from weights seeded by ``seed`` alone (every
    method starts from the same ones)."""
    torch.manual_seed(derive_seed(seed, "bench-init"))
    return build_model(default_model_config(SHAPE))


# ------------------------------------------------------------------------- machine's limit
def machine_limits(proto: Protocol) -> dict:
    """The ceiling on this machine: forward+backward+Adam on the same MLP with tensors already
    in memory (no data, no EMA, no logging), and raw forward rows/s in inference mode on the
    1024-row chunks pair generation uses."""
    net = fresh_net(proto.seed)
    opt = torch.optim.Adam(net.parameters(), lr=proto.lr)
    g = generator(proto.seed, "bench-limit")
    b = proto.batch_size
    x0, x1, t = torch.randn(b, 2, generator=g), torch.randn(b, 2, generator=g), torch.rand(b, generator=g)

    def step():
        loss = F.mse_loss(net(interpolate(x0, x1, t), t), target_velocity(x0, x1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    started = time.perf_counter()
    for _ in range(proto.limit_steps):
        step()
    train = proto.limit_steps * b / (time.perf_counter() - started)
    chunk, reps = 1024, 10 * proto.limit_steps
    xs, ts = torch.randn(chunk, 2, generator=g), torch.rand(chunk, generator=g)
    with torch.inference_mode():
        net(xs, ts)
        started = time.perf_counter()
        for _ in range(reps):
            net(xs, ts)
        fwd = reps * chunk / (time.perf_counter() - started)
    return {"train_samples_per_s": train, "forward_rows_per_s": fwd}


# ------------------------------------------------------------------------------ evaluation
def evaluate(net: torch.nn.Module, target: str, proto: Protocol, row: Row) -> None:
    """Score a trained network with rectflow's solver and metrics into ``row``."""
    net = net.eval()
    dataset = load_dataset({"name": target}, "test")
    x0 = noise(proto.eval_n, SHAPE, proto.seed)
    ref = reference_data(dataset, proto.eval_n, proto.seed)
    for k in NFES:
        row.w2[str(k)] = w2(solve(net, x0, method="euler", steps=k).x, ref)
    sol = solve(net, x0, method="dopri5", rtol=proto.ref_tol, atol=proto.ref_tol)
    row.ref_w2, row.ref_nfe = w2(sol.x, ref), sol.nfe
    p = path_metrics(net, x0, "euler", proto.path_steps, ot_subsample=proto.ot_subsample)
    row.straightness, row.transport_cost, row.ot_cost = (p["straightness"], p["transport_cost"],
                                                         p["ot_cost"])
    figures = [*row.w2.values(), row.ref_w2, row.straightness, row.transport_cost, row.ot_cost]
    if not all(math.isfinite(v) for v in figures):
        raise FloatingPointError("a metric is not finite")


# ---------------------------------------------------------------------------- rectflow rows
class Clock:
    """A stage callback that keeps the time of the first and the last event of each kind."""

    def __init__(self):
        self.first: dict[str, float] = {}
        self.last: dict[str, float] = {}

    def __call__(self, event: dict) -> None:
        now = time.perf_counter()
        self.first.setdefault(event["event"], now)
        self.last[event["event"]] = now

    def span(self, start: str, end: str) -> float:
        return self.last[end] - self.first[start]


def _train_stage(row: Row, fn, steps: int, proto: Protocol, limits: dict, **kw) -> Path:
    """Run one rectflow training stage; its samples/s count only the loop (from the 'start'
    event to the last 'step' event), its wall time the whole call."""
    clock = Clock()
    torch.manual_seed(derive_seed(proto.seed, "bench-init"))   # stages.train's initial weights
    started = time.perf_counter()
    out = fn(callback=clock, evaluate=False, **kw)
    row.train_wall_s = time.perf_counter() - started
    row.steps = steps
    row.train_samples_per_s = steps * proto.batch_size / clock.span("start", "step")
    row.train_ratio = row.train_samples_per_s / limits["train_samples_per_s"]
    return out.path


def _couple(teacher: Path, out: Path, proto: Protocol, limits: dict) -> dict:
    clock = Clock()
    cfg = CoupleConfig(n=proto.pairs, solver=proto.pair_solver, steps=proto.pair_steps,
                       seed=proto.seed, shard_size=proto.pairs, ot_subsample=proto.ot_subsample)
    started = time.perf_counter()
    manifest = stages.couple(teacher, out, cfg, callback=clock)
    wall = time.perf_counter() - started
    rate = proto.pairs / clock.span("start", "shard")
    return {"path": out, "pairs_per_s": rate, "pair_nfe": manifest.nfe, "wall": wall,
            "pairs_ratio": rate * manifest.nfe / limits["forward_rows_per_s"]}


def rectflow_rows(target: str, proto: Protocol, work: Path, limits: dict) -> list[Row]:
    rows = {k: Row(target, k) for k in RECTFLOW}
    done: dict[str, Path] = {}
    pairs: dict[str, dict] = {}
    reflow_td = stages.reflow_defaults().time_dist
    plan = [  # key, needs, how to run it
        ("rf1", None, lambda r: _train_stage(
            r, stages.train, proto.steps, proto, limits, out=work / "rf1", data=target,
            options=proto.train_config(proto.steps))),
        ("rf2", "rf1", lambda r: _pairs_then_train(r, "rf1", stages.reflow, reflow_td)),
        ("rf3", "rf2", lambda r: _pairs_then_train(r, "rf2", stages.reflow, reflow_td)),
        ("distill", "rf2", lambda r: _pairs_then_train(r, "rf2", stages.distill, None)),
        ("rf-ot", None, lambda r: _train_stage(
            r, stages.train, proto.ot_steps, proto, limits, out=work / "rf-ot", data=target,
            coupling="ot", options=proto.train_config(proto.ot_steps))),
    ]

    def _pairs_then_train(r: Row, teacher: str, fn, time_dist) -> Path:
        if teacher not in pairs:
            pairs[teacher] = _couple(done[teacher], work / f"pairs-{teacher}", proto, limits)
        p = pairs[teacher]
        r.pairs_per_s, r.pair_nfe, r.pairs_ratio, r.pairs_wall_s = (
            p["pairs_per_s"], p["pair_nfe"], p["pairs_ratio"], p["wall"])
        cfg = proto.train_config(proto.steps, time_dist or TimeDist())
        return _train_stage(r, fn, proto.steps, proto, limits, pairs=p["path"],
                            out=work / r.key, options=cfg)

    for key, needs, run in plan:
        row = rows[key]
        if needs is not None and needs not in done:
            row.status, row.message = "skipped", f"needs {METHODS[needs]}, which did not finish"
            continue
        started = time.perf_counter()
        try:
            done[key] = run(row)
            evaluate(ckpt.Checkpoint(done[key]).load_model(ema=True), target, proto, row)
        except Exception as e:  # a failed stage is a result, not the end of the benchmark
            row.status, row.message = "failed", _reason(e)
            done.pop(key, None)
        log_row(row, started)
    return [rows[k] for k in RECTFLOW]


# -------------------------------------------------------------------------------- peer rows
def peer_rows(target: str, proto: Protocol, limits: dict) -> list[Row]:
    dataset = load_dataset({"name": target}, "train")
    nets: dict[str, torch.nn.Module] = {}

    def reflow_loss(net):
        if "lucid" not in nets:
            raise LookupError("needs lucidrains RectifiedFlow, which did not finish")
        net.load_state_dict(nets["lucid"].state_dict())   # reflow starts from the teacher
        return pa.lucidrains_reflow_loss(copy.deepcopy(nets["lucid"]), net, proto.batch_size)

    losses = {"icfm": lambda net: pa.torchcfm_loss(net, ot=False),
              "otcfm": lambda net: pa.torchcfm_loss(net, ot=True),
              "meta": pa.meta_condot_loss, "lucid": pa.lucidrains_loss,
              "lucid-reflow": reflow_loss}
    rows = []
    for key in PEERS:
        steps = proto.ot_steps if key in OT_ROWS else proto.steps
        rows.append(run_peer(key, losses[key], target, dataset, steps, proto, limits, nets))
    return rows


def run_peer(key: str, make_loss, target: str, dataset, steps: int, proto: Protocol,
             limits: dict, nets: dict) -> Row:
    """Train and score one peer; a missing package or a failing API becomes the row's status."""
    row = Row(target, key, steps=steps)
    started = time.perf_counter()
    try:
        net = fresh_net(proto.seed)
        loss = make_loss(net)
        t0 = time.perf_counter()
        fit = pa.fit_peer(net, loss, dataset, proto.recipe(steps))
        row.train_wall_s = time.perf_counter() - t0
        row.train_samples_per_s = fit["train_samples_per_s"]
        row.train_ratio = row.train_samples_per_s / limits["train_samples_per_s"]
        evaluate(net, target, proto, row)
        nets[key] = net
    except pa.NotInstalled as e:
        row.status, row.message = "not installed", str(e)
    except LookupError as e:
        row.status, row.message = "skipped", str(e)
    except Exception as e:
        row.status, row.message = "failed", _reason(e)
    log_row(row, started)
    return row


# ------------------------------------------------------------------------------ the report
def environment() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for dist in ("rectflow", "torch", "accelerate", "numpy", "scipy", "torchcfm",
                 "flow-matching", "rectified-flow-pytorch", "POT"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "not installed"
    return {"date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"), "cpu": cpu,
            "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS", "unset"),
            "load_average": [round(x, 2) for x in os.getloadavg()],
            "python": platform.python_version(), "versions": versions}


def _f(v, fmt: str = ".3f") -> str:
    return "" if v is None else format(v, fmt)


def _rate(rate, ratio) -> str:
    return "" if rate is None else f"{rate:,.0f} ({ratio:.2f}x)"


def table(rows: list[Row]) -> list[str]:
    head = ("| method | steps | W2 @1 | W2 @2 | W2 @4 | W2 @8 | W2 dopri5 (NFE) | straightness "
            "| transport | OT cost | train samples/s (x bare loop) | pairs/s (x forward limit) "
            "| train s | pairs s |")
    lines = [head, "|" + "---|" * 14]
    for r in rows:
        if r.status != "ok":
            msg = r.message.replace("|", "\\|")
            lines.append(f"| {r.method} | {r.steps or ''} | **{r.status}**: {msg} |"
                         + " |" * 11)
            continue
        w = [_f(r.w2[str(k)]) for k in NFES]
        lines.append(
            f"| {r.method} | {r.steps} | " + " | ".join(w)
            + f" | {_f(r.ref_w2)} ({r.ref_nfe}) | {_f(r.straightness, '.4f')} "
            f"| {_f(r.transport_cost)} | {_f(r.ot_cost)} "
            f"| {_rate(r.train_samples_per_s, r.train_ratio)} "
            f"| {_rate(r.pairs_per_s, r.pairs_ratio)}{f' [{r.pair_nfe} NFE]' if r.pair_nfe else ''} "
            f"| {_f(r.train_wall_s, '.1f')} | {_f(r.pairs_wall_s, '.1f')} |")
    return lines


def goals(rows: list[Row]) -> list[dict]:
    """The targets this benchmark exists to check, each with a verdict and its numbers."""
    out = []
    by = {(r.target, r.key): r for r in rows}
    ok = lambda t, k: by.get((t, k)) is not None and by[(t, k)].status == "ok"  # noqa: E731
    for t in sorted({r.target for r in rows}, key=lambda x: TARGETS.index(x)
                    if x in TARGETS else 99):
        if ok(t, "distill"):
            d = by[(t, "distill")].w2["1"]
            peers = {METHODS[k]: by[(t, k)].w2["1"] for k in PEERS if ok(t, k)}
            best = min(peers.values()) if peers else None
            out.append({"goal": f"{t}: distilled 1-step W2 <= every peer's 1-step W2",
                        "met": best is not None and d <= best,
                        "detail": f"distill {d:.3f} vs best peer {_f(best)}"
                                  + (f" ({d / best:.2f}x)" if best else " (no peer row)")})
            if ok(t, "rf1"):
                ref = by[(t, "rf1")].ref_w2
                out.append({"goal": f"{t}: distilled 1-step W2 <= 1.2x rf1 at dopri5",
                            "met": d <= 1.2 * ref,
                            "detail": f"{d:.3f} vs rf1 dopri5 {ref:.3f} ({d / ref:.2f}x)"})
        if ok(t, "rf1") and ok(t, "rf2"):
            s1, s2 = by[(t, "rf1")].straightness, by[(t, "rf2")].straightness
            out.append({"goal": f"{t}: rf2 straightness <= rf1 / 10", "met": s2 <= s1 / 10,
                        "detail": f"rf2 {s2:.4f} vs rf1 {s1:.4f} (ratio {s2 / s1:.3f})"})
        if ok(t, "rf1"):
            r1 = by[(t, "rf1")]
            out.append({"goal": f"{t}: rf1 train throughput >= 0.95x bare loop",
                        "met": r1.train_ratio >= 0.95, "detail": f"{r1.train_ratio:.2f}x"})
            for k in ("icfm", "meta", "lucid"):
                if ok(t, k):
                    p = by[(t, k)]
                    out.append({"goal": f"{t}: rf1 train throughput >= {p.method}",
                                "met": r1.train_samples_per_s >= p.train_samples_per_s,
                                "detail": f"{r1.train_samples_per_s:,.0f} vs "
                                          f"{p.train_samples_per_s:,.0f} samples/s "
                                          f"({r1.train_samples_per_s / p.train_samples_per_s:.2f}x)"})
        if ok(t, "rf-ot") and ok(t, "otcfm"):
            a, b = by[(t, "rf-ot")], by[(t, "otcfm")]
            out.append({"goal": f"{t}: rectflow OT train throughput >= TorchCFM OT-CFM",
                        "met": a.train_samples_per_s >= b.train_samples_per_s,
                        "detail": f"{a.train_samples_per_s:,.0f} vs {b.train_samples_per_s:,.0f}"
                                  f" samples/s ({a.train_samples_per_s / b.train_samples_per_s:.2f}x)"})
    return out


def render(result: dict) -> str:
    env, proto, limits = result["environment"], result["protocol"], result["limits"]
    rows = [Row(**r) for r in result["rows"]]
    v = env["versions"]
    lines = [
        "# rectflow against its peers and the machine's limit", "",
        f"Regenerate with `{result['command']}` (full run; `--quick` checks the harness only).",
        "", f"- Date: {env['date']}; wall time of the whole run {result['seconds'] / 60:.1f} min",
        "- rectflow rf1, TorchCFM I-CFM, Meta CondOT and lucidrains RectifiedFlow regress the "
        "same target on the same (x0, x1, t) stream from the same initial weights, so their "
        "quality figures agree up to float rounding: those rows differ in speed only.",
        f"- Machine: {env['cpu']}, {env['cores']} cores, torch threads {env['torch_threads']}, "
        f"OMP_NUM_THREADS {env['omp_num_threads']}; load average at the start "
        f"{'/'.join(str(x) for x in env['load_average'])} (the CPU is shared with other jobs, "
        "so every rate is noisy: compare the ratios).",
        "- Versions: " + ", ".join(f"{k} {v[k]}" for k in v) + f", Python {env['python']}",
        f"- Protocol: source N(0, I); the same MLP for every method (3x256 SiLU, 32 sinusoidal "
        f"time features, same seeded initial weights); Adam lr {proto['lr']}, batch "
        f"{proto['batch_size']}, no warm-up or clipping, EMA {proto['ema_decay']} evaluated; "
        f"{proto['steps']} steps per stage ({proto['ot_steps']} for the two minibatch-OT rows, "
        "which solve an exact assignment per block of 256 pairs); reflow rounds on "
        f"{proto['pairs']:,} pairs from {proto['pair_solver']} with {proto['pair_steps']} steps; "
        "reflow with rectflow's U-shaped t, distillation at t = 0; seed "
        f"{proto['seed']}.",
        f"- Scoring (rectflow's solver and metrics for every network): exact W2 between "
        f"{proto['eval_n']:,} samples and {proto['eval_n']:,} fresh target points at Euler NFE "
        f"1/2/4/8 and with dopri5 (rtol = atol = {proto['ref_tol']}); straightness and "
        f"transport cost on a {proto['path_steps']}-step Euler grid; OT cost = exact optimal "
        f"assignment cost of the same endpoints on the first {proto['ot_subsample']:,}.",
        "", "## The machine's limit", "",
        "Measured again before each target's rows, as the load on the shared CPU drifts.", "",
        "| before | bare loop: forward + backward + Adam, tensors in memory (samples/s) "
        "| raw forward, inference mode, 1024-row chunks (rows/s) |", "|---|---|---|",
        *(f"| {t} | {lim['train_samples_per_s']:,.0f} | {lim['forward_rows_per_s']:,.0f} |"
          for t, lim in limits.items()), "",
        "Train ratios are samples/s over the bare loop's. Pair ratios are pairs/s x NFE per pair "
        "over the raw forward rate (1.00x = the solver costs nothing beyond the network).", ""]
    for t in proto["targets"]:
        lines += [f"## {t}", "", *table([r for r in rows if r.target == t]), ""]
    lines += ["## Goals", ""]
    for g in result["goals"]:
        lines.append(f"- {'met' if g['met'] else '**missed**'}: {g['goal']} — {g['detail']}")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------- main
def run(proto: Protocol, work: Path, command: str) -> dict:
    started = time.perf_counter()
    env = environment()
    log(f"machine: {env['cpu']}, {env['cores']} cores, {torch.get_num_threads()} threads")
    rows: list[Row] = []
    limits = {}
    for target in proto.targets:   # measured again per target: the load on the CPU drifts
        limits[target] = lim = machine_limits(proto)
        log(f"[{target}] limit: {lim['train_samples_per_s']:,.0f} samples/s train, "
            f"{lim['forward_rows_per_s']:,.0f} rows/s forward")
        rows += rectflow_rows(target, proto, work / target, lim)
        rows += peer_rows(target, proto, lim)
    return {"command": command, "environment": env, "protocol": asdict(proto),
            "limits": limits, "rows": [asdict(r) for r in rows],
            "goals": goals(rows), "seconds": time.perf_counter() - started}


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny budgets: checks the harness")
    ap.add_argument("--write", nargs="?", const=str(HERE / "RESULTS.md"), default=None,
                    metavar="PATH", help="write the Markdown report (default "
                                         "benchmarks/RESULTS.md)")
    ap.add_argument("--json", metavar="PATH", help="also write every figure as JSON")
    ap.add_argument("--targets", default=",".join(TARGETS),
                    help=f"comma-separated, from {', '.join(TARGETS)}")
    for name in ("steps", "ot_steps", "pairs", "eval_n", "limit_steps"):
        ap.add_argument(f"--{name.replace('_', '-')}", type=int, default=None,
                        help=f"override the preset (full {FULL[name]}, quick {QUICK[name]})")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads (default: torch's own choice, one per core; "
                         f"{QUICK_THREADS} with --quick)")
    ap.add_argument("--workdir", help="keep the rectflow run folders here (default: a "
                                      "temporary folder, removed at the end)")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["--own"]:   # each library at its own defaults: benchmarks/own_defaults.py
        import own_defaults
        own_defaults.main(argv[1:])
        return 0
    args = parse(argv)
    preset = dict(QUICK if args.quick else FULL)
    for k in preset:
        if getattr(args, k) is not None:
            preset[k] = getattr(args, k)
    targets = tuple(t for t in args.targets.split(",") if t)
    bad = [t for t in targets if t not in TARGETS]
    if bad or not targets or any(v < 1 for v in preset.values()):
        print(f"peers.py: error: targets must be among {', '.join(TARGETS)} and every "
              "budget >= 1", file=sys.stderr)
        return 2
    proto = Protocol(**preset, targets=targets, seed=args.seed)
    threads = args.threads or (QUICK_THREADS if args.quick else None)
    if threads:
        torch.set_num_threads(threads)
    command = "python benchmarks/peers.py " + " ".join(sys.argv[1:] if argv is None else argv)
    if args.workdir:
        result = run(proto, Path(args.workdir), command.strip())
    else:
        with tempfile.TemporaryDirectory(prefix="rectflow-bench-") as tmp:
            result = run(proto, Path(tmp), command.strip())
    report = render(result)
    print(report)
    if args.write:
        ckpt.atomic_write_bytes(args.write, report.encode())
    if args.json:
        ckpt.atomic_write_json(args.json, result)
    return 0


# its tiny run under RECTFLOW_SMOKE=1 (tests/test_bench_smoke.py; see README.md here)
SMOKE_RUNS = [["--quick", "--targets", "moons", "--steps", "2", "--ot-steps", "1", "--pairs",
                "1024", "--eval-n", "64", "--limit-steps", "2", "--write", "{tmp}/RESULTS.md"]]


if __name__ == "__main__":
    sys.exit(main())
