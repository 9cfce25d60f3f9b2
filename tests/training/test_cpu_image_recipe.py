"""Image defaults on a CPU: width and batch chosen from the time of a step, the full recipe
kept when fast or on a GPU, and whatever the user gave never changed."""
import numpy as np
import torch
from PIL import Image

from rectflow.machine import steptime
from rectflow.models import default_model_config
from rectflow.options import train_config

SHAPE = (1, 28, 28)


def _setup(given=None, steps=300):
    cfg = train_config("train", {"train_steps": steps, **(given or {})}, kind="image")
    return default_model_config(SHAPE), cfg


def fake_timer(scale):
    """Seconds per step growing with width^2 and batch, as a U-Net's do; records calls."""
    calls = []

    def timer(model_cfg, batch):
        calls.append((model_cfg["width"], batch))
        return scale * (model_cfg["width"] / 64) ** 2 * batch / 128
    timer.calls = calls
    return timer


def choose(model_cfg, cfg, given=None, overrides=None, timer=None):
    notes = []
    m, c = steptime.fit_recipe(SHAPE, model_cfg, cfg, given or {}, overrides or {},
                               notes.append, timer=timer)
    return m, c, notes


def test_a_slow_step_gets_the_smaller_recipe_and_says_so():
    model_cfg, cfg = _setup()
    assert (model_cfg["width"], cfg.batch_size) == (64, 128)   # the full recipe at 28 px
    timer = fake_timer(13.0)   # ~13 s per full step: an hour for 300 steps
    m, c, notes = choose(model_cfg, cfg, timer=timer)
    # 64/128: 13 s; 32/128: 3.25 s; 16/128: 0.81 s x 300 = 244 s <= 300 s
    assert (m["width"], c.batch_size) == (16, 128)
    assert timer.calls[:3] == [(64, 128), (32, 128), (16, 128)]
    assert {k: v for k, v in m.items() if k != "width"} == \
        {k: v for k, v in model_cfg.items() if k != "width"}
    [line] = notes
    assert line.startswith("images on CPU: U-Net width 16, batch 128 (about 0.81 s/step, "
                           "ETA 4 min for 300 steps)") and "--width/--batch-size" in line
    # slower still: the batch is halved once the width is at its floor
    m, c, notes = choose(model_cfg, cfg, timer=fake_timer(40.0))
    assert (m["width"], c.batch_size) == (16, 32)


def test_a_fast_step_keeps_the_full_recipe():
    model_cfg, cfg = _setup()
    m, c, notes = choose(model_cfg, cfg, timer=fake_timer(0.5))
    assert m == model_cfg and c.batch_size == 128
    assert "width 64, batch 128, the full recipe" in notes[0] and "ETA 2 min" in notes[0]


def test_cuda_keeps_the_full_recipe_without_timing(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    model_cfg, cfg = _setup()
    timer = fake_timer(13.0)
    m, c, notes = choose(model_cfg, cfg, timer=timer)
    assert m == model_cfg and c is cfg and notes == [] and timer.calls == []


def test_a_given_width_or_batch_is_never_changed():
    slow = 100.0
    model_cfg, cfg = _setup({"batch_size": 128})
    m, c, notes = choose(model_cfg, cfg, given={"batch_size": 128}, timer=fake_timer(slow))
    assert c.batch_size == 128 and m["width"] == 16 and "batch 128 (given)" in notes[0]

    wide = default_model_config(SHAPE, width=64)
    m, c, notes = choose(wide, _setup()[1], overrides={"width": 64}, timer=fake_timer(slow))
    assert m["width"] == 64 and c.batch_size == 32 and "width 64 (given)" in notes[0]

    timer = fake_timer(slow)   # both given: nothing is timed, nothing said
    m, c, notes = choose(wide, cfg, given={"batch_size": 128}, overrides={"width": 64},
                         timer=timer)
    assert (m, c, notes, timer.calls) == (wide, cfg, [], [])


def test_the_ladder_keeps_batches_the_micro_batches_divide():
    assert steptime.ladder(64, 128, False, False) == [(64, 128), (32, 128), (16, 128),
                                                      (16, 64), (16, 32)]
    assert steptime.ladder(64, 128, False, False, accum=64) == [(64, 128), (32, 128),
                                                                (16, 128), (16, 64)]


def test_the_trial_timer_times_real_steps_and_leaves_the_rng_alone():
    ticks = iter(range(100))
    state = torch.random.get_rng_state()
    cfg = default_model_config((1, 8, 8))
    timer = steptime.trial_timer((1, 8, 8), clock=lambda: float(next(ticks)))
    # each timed step reads the clock twice one tick apart: t1 = t2 = 1 s per step
    assert timer(cfg, 8) > 0 and timer(cfg, 128) >= timer(cfg, 8)
    assert torch.equal(state, torch.random.get_rng_state())


def test_a_batch_shapes_slow_first_step_is_not_timed(monkeypatch):
    """A batch shape's first step is slower (kernels and buffers made for it): the trial must
    warm both probe sizes, or the line from 8 to 16 samples is steep and the estimate at
    batch 128 many times too high (it once put an 8x8 step at 0.28 s; it takes 0.04 s)."""
    sizes, seen = [], set()
    randn = torch.randn

    def recording_randn(*shape, **kw):
        if len(shape) > 1:
            sizes.append(shape[0])   # the trial step's batch: x = randn(n, *shape)
        return randn(*shape, **kw)
    monkeypatch.setattr(torch, "randn", recording_randn)
    now, reads = [0.0], [0]

    def clock():   # read at a step's start and end: 0.1 s + 10 ms a sample, +5 s if cold
        reads[0] += 1
        if reads[0] % 2 == 0:
            n = sizes[-1]
            now[0] += 0.1 + 0.01 * n + (5.0 if n not in seen else 0.0)
            seen.add(n)
        return now[0]
    timer = steptime.trial_timer((1, 8, 8), clock=clock)
    assert abs(timer(default_model_config((1, 8, 8)), 128) - 1.38) < 1e-6   # cold: 81 s
    assert seen == {steptime.PROBE, 2 * steptime.PROBE}


def test_the_cli_says_what_it_chose_on_a_small_folder(cli, tmp_path):
    pics = tmp_path / "pics"
    pics.mkdir()
    rng = np.random.default_rng(0)
    for i in range(20):
        Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(pics / f"{i}.png")
    code, out, err = cli("train", "--data", pics, "--out", tmp_path / "rf1", "--train-steps",
                         "2", "--no-eval", "--threads", "1")
    assert code == 0, err
    text = " ".join(out.split())
    assert "images on CPU: U-Net width 32, batch 128, the full recipe (about" in text
    assert "ETA" in text and "for 2 steps" in text
