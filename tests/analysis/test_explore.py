"""The trajectory explorer: the data it precomputes, and its page driven in headless Chromium.

The models are analytic velocity fields (nothing is trained): ``straight`` moves every point by
the same constant velocity (straight paths, straightness 0), ``curved`` rotates the plane
(circular arcs, straightness > 0).
"""
from __future__ import annotations

import base64
import json
import math
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from rectflow.errors import UserError
from rectflow.analysis.explore import page_html, trajectories, write_page
from rectflow.core.seeding import generator
from rectflow.core.solvers import solve

SHIFT = torch.tensor([2.0, 1.0])


def straight(x, t):
    return SHIFT.to(x).expand_as(x)


def curved(x, t):
    return 1.5 * torch.stack([-x[:, 1], x[:, 0]], dim=1)


CHOICES = [("euler", 1), ("euler", 8), ("rk4", 40)]


@pytest.fixture(scope="module")
def points_data():
    x0 = torch.randn(120, 2, generator=generator(0, "explore-x0"))
    ref = torch.randn(240, 2, generator=generator(0, "explore-ref")) + SHIFT
    return trajectories({"straight": straight, "curved": curved}, x0, CHOICES, reference=ref,
                        max_frames=21, path_steps=50)


def _frames(run, n):
    enc = run["frames"]
    q = np.frombuffer(base64.b64decode(enc["q"]), dtype="<u2").reshape(-1, n, 2)
    return np.asarray(enc["lo"]) + q * np.asarray(enc["scale"])


def test_data_holds_trajectories_and_metrics(points_data):
    d = points_data
    runs = d["runs"]
    assert set(runs) == {"straight", "curved"}
    assert [c["key"] for c in d["choices"]] == ["euler-1", "euler-8", "rk4-40"]
    # straight field: paths are exact lines, straightness 0; the rotation is curved
    assert d["models"]["straight"]["metrics"]["straightness"] < 1e-6
    assert d["models"]["curved"]["metrics"]["straightness"] > 0.1
    # NFE per solver, frames subsampled to max_frames with both ends kept
    assert [runs["curved"][k]["metrics"]["nfe"] for k in ("euler-1", "euler-8", "rk4-40")] == [1, 8, 160]
    rk = runs["curved"]["rk4-40"]
    assert rk["recorded"] == 41 and len(rk["times"]) == 21 and rk["times"][0] == 0 and rk["times"][-1] == 1
    # decoded states match the solver: the rotation by 1.5 rad, to the 16-bit grid's resolution
    x0 = _frames(runs["straight"]["euler-1"], 120)[0]
    end = _frames(rk, 120)[-1]
    c, s = math.cos(1.5), math.sin(1.5)
    expect = x0 @ np.array([[c, s], [-s, c]])
    assert np.abs(end - expect).max() < 1e-3
    # W2 of the straight field (shifted noise vs shifted noise) is near the floor, the rotation's
    # endpoints sit around 0 and are far from the shifted reference
    st, cu = runs["straight"]["euler-8"]["metrics"], runs["curved"]["euler-8"]["metrics"]
    assert st["w2_floor"] == cu["w2_floor"] > 0
    assert st["w2"] < 2 * st["w2_floor"] < cu["w2"]


def test_page_is_self_contained_and_small(points_data, tmp_path):
    out = write_page(points_data, tmp_path / "explore.html", title="A </script> title")
    text = out.read_text()
    assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//", text), "page must not fetch anything"
    assert "A &lt;/script&gt; title" in text
    embedded = re.search(r'id="explorer-data">(.*?)</script>', text, re.S).group(1)
    assert json.loads(embedded) == points_data
    assert len(text) < 200_000


def test_images_and_bad_input():
    x0 = torch.randn(5, 1, 4, 4, generator=generator(0, "explore-img"))
    d = trajectories({"decay": lambda x, t: -x}, x0, [("heun", 3), ("dopri5", None)],
                     image_samples=2)
    assert d["kind"] == "images" and d["shown"] == 2
    run = d["runs"]["decay"]["dopri5-adaptive"]
    pixels = base64.b64decode(run["frames"]["pixels"])
    assert len(pixels) == len(run["times"]) * 2 * 16
    assert run["metrics"]["nfe"] > 6
    bad = [
        (dict(velocity_fns={}), "at least one model"),
        (dict(choices=[("euler", 0)]), "steps of euler"),
        (dict(choices=[("leapfrog", 4)]), "solver must be one of"),
        (dict(x0=torch.zeros(4, 3)), "x0 must be"),
        (dict(reference=torch.zeros(2, 2)), "reference must hold"),
        (dict(max_frames=1), "max_frames must be"),
    ]
    for change, message in bad:
        args = dict(velocity_fns={"s": straight}, x0=torch.zeros(4, 2), choices=[("euler", 2)])
        args.update(change)
        with pytest.raises(UserError, match=message):
            trajectories(**args)
    with pytest.raises(UserError, match="format"):
        page_html({"runs": {}})


# --------------------------------------------------------------------------- in the browser
def _browser():
    chrome = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")
                   if shutil.which(n)), None)
    driver = shutil.which("chromedriver")
    if chrome is None or driver is None:
        pytest.skip("no Chromium + chromedriver installed (Debian: apt-get install chromium "
                    "chromium-driver)")
    from selenium import webdriver          # the test extra's dependency: missing it is a failure
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = chrome
    profile = tempfile.mkdtemp(prefix="explore-chrome-")
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
              "--disable-component-update", "--disable-sync", "--no-first-run",
              "--disable-dev-shm-usage", "--window-size=1280,900", f"--user-data-dir={profile}"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=opts, service=Service(executable_path=driver)), profile


@pytest.fixture(scope="module")
def browser():
    drv, profile = _browser()
    yield drv
    drv.quit()
    shutil.rmtree(profile, ignore_errors=True)


def _open(browser, path):
    browser.get(path.as_uri())
    return browser.execute_script("return window.explorer.state")


def _errors(browser):
    return [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]


def _canvas(browser):
    return browser.execute_script(
        "return document.getElementById('explorer-canvas').toDataURL()")


def test_page_in_browser(browser, points_data, tmp_path):
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select, WebDriverWait
    page = write_page(points_data, tmp_path / "explore.html")
    state = _open(browser, page)
    assert state["model"] == "straight" and state["t"] == 0
    by_id = browser.find_element
    pts = lambda: np.array(browser.execute_script("return window.explorer.currentPoints()"))
    start, pixels0 = pts(), _canvas(browser)
    # the slider moves the points (read from the page's state and from the canvas pixels)
    Select(by_id("id", "choice-select")).select_by_value("rk4-40")
    slider = by_id("id", "t-slider")
    slider.send_keys(Keys.END)
    assert browser.execute_script("return window.explorer.state.t") == 1
    end_straight = pts()
    assert np.allclose(end_straight, start + np.tile(SHIFT.numpy(), len(start) // 2), atol=1e-3)
    assert _canvas(browser) != pixels0
    # switching the model changes the plotted trajectories
    Select(by_id("id", "model-select")).select_by_value("curved")
    end_curved = pts()
    assert np.abs(end_curved - end_straight).max() > 0.5
    assert "curved" in by_id("css selector", "#metrics-table th.current").text
    # play advances time (from 0, since it restarts at the end), then the button pauses
    slider.send_keys(Keys.HOME)
    by_id("id", "play-button").click()
    WebDriverWait(browser, 10).until(
        lambda b: b.execute_script("return window.explorer.state.t") > 0.1)
    by_id("id", "play-button").click()
    t = browser.execute_script("return window.explorer.state.t")
    assert 0.1 < t < 1 and by_id("id", "play-button").text == "Play"
    assert float(slider.get_attribute("value")) == pytest.approx(1000 * t, abs=1)
    assert _errors(browser) == []
    # the address can name the initial view
    browser.get(page.as_uri() + "#model=curved&choice=euler-8&t=0.5")
    browser.refresh()
    state = browser.execute_script("return window.explorer.state")
    assert (state["model"], state["choice"], state["t"]) == ("curved", "euler-8", 0.5)
    assert by_id("id", "choice-select").get_attribute("value") == "euler-8"
    assert _errors(browser) == []
    browser.execute_script("window.explorer.setChoice('rk4-40'); window.explorer.setT(0.6)")
    png = browser.get_screenshot_as_png()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    (tmp_path / "explorer.png").write_bytes(png)


def test_image_page_in_browser(browser, tmp_path):
    x0 = torch.randn(4, 3, 6, 6, generator=generator(0, "explore-img"))
    red = torch.tensor([1.0, -1.0, -1.0]).view(1, 3, 1, 1)
    fields = {"to-grey": lambda x, t: -x, "to-red": lambda x, t: 2 * (red - x)}
    d = trajectories(fields, x0, [("euler", 4)], image_samples=3)
    _open(browser, write_page(d, tmp_path / "images.html"))
    before = browser.execute_script("return window.explorer.currentPoints()")
    assert len(before) == 3 * 3 * 6 * 6
    shot = _canvas(browser)
    browser.find_element("id", "t-slider").send_keys("\ue010")   # END
    assert browser.execute_script("return window.explorer.currentPoints()") != before
    assert _canvas(browser) != shot
    assert _errors(browser) == []


# ------------------------------------------------------------------ dopri5, samplers, the CLI
def test_dopri5_frames_follow_each_sample_in_time():
    """dopri5 takes each sample's own steps; the page gets them interpolated to common times,
    so at every frame time the rotation field's points sit on their exact circular paths."""
    x0 = torch.randn(50, 2, generator=generator(0, "explore-dopri5")) * torch.linspace(0.1, 3, 50)[:, None]
    d = trajectories({"curved": curved}, x0, [("dopri5", None)], max_frames=21)
    run = d["runs"]["curved"]["dopri5-adaptive"]
    assert run["times"] == [round(i / 20, 6) for i in range(21)]
    assert 3 <= run["steps"] < run["recorded"] < 21     # fewer states than frames: interpolated
    frames = _frames(run, 50)
    x = x0.numpy().astype(np.float64)
    rot = lambda t: np.array([[math.cos(1.5 * t), math.sin(1.5 * t)],   # noqa: E731
                              [-math.sin(1.5 * t), math.cos(1.5 * t)]])
    assert np.abs(frames[-1] - x @ rot(1.0)).max() < 1e-3             # the endpoint, exactly
    # between a sample's own steps its point moves on the chord of the arc: off the exact
    # position by at most r (1 - cos(1.5 h / 2)) for its longest step h (plus the 16-bit grid)
    rows = solve(curved, x0, "dopri5", record=True).row_times
    h = (rows[1:] - rows[:-1]).max(0).values.numpy()
    bound = np.linalg.norm(x, axis=1) * (1 - np.cos(0.75 * h)) + 1e-3
    for t, got in zip(run["times"], frames):
        assert (np.linalg.norm(got - x @ rot(t), axis=1) <= bound).all(), t
    assert bound.max() > 1e-2      # long steps: a frame per step would skip most of the path
    assert 6 < run["metrics"]["nfe"] <= run["metrics"]["nfe_max"]


@pytest.fixture(scope="module")
def two_models(tmp_path_factory):
    """A tiny flow and a tiny diffusion model on the same blobs (seconds each)."""
    from support import TINY_MODEL, point_cloud

    from rectflow.stages import train as stages
    from rectflow.options import TrainConfig
    d = tmp_path_factory.mktemp("explore-models")
    data = str(point_cloud(d / "blobs.npy", n=2000))   # a test split of >= 2 x 40 points
    cfg = TrainConfig(train_steps=20, batch_size=64, lr=1e-2, warmup=0, save_every=20, log_every=5)
    for name, objective in (("dm", "diffusion"), ("flow", "flow")):
        stages.train(d / "models" / name, data, model=TINY_MODEL, evaluate=False,
                     options=cfg.replace(objective=objective))
    return d / "models"


def _embedded(page: Path) -> dict:
    return json.loads(re.search(r'id="explorer-data">(.*?)</script>', page.read_text(),
                                re.S).group(1))


def test_cli_explore(cli, two_models, browser, tmp_path):
    from selenium.webdriver.support.ui import Select

    from rectflow.records.checkpoint import Checkpoint
    from rectflow.core.seeding import noise
    page = tmp_path / "page.html"
    args = ["-n", 40, "--steps", "1,4", "--ancestral-steps", 10, "--max-frames", 11]
    code, out, err = cli("explore", "--ckpt", two_models / "dm", "--ckpt", two_models / "flow",
                         "--out", page, *args)
    assert code == 0, err
    text = " ".join(out.split())
    assert "W2 floor" in text and "ancestral-10" in text and "diffusion" in text
    d = _embedded(page)
    assert {m: d["models"][m]["metrics"]["objective"] for m in d["models"]} == \
        {"dm": "diffusion", "flow": "flow"}
    assert set(d["runs"]["dm"]) == {"euler-1", "euler-4", "dopri5-adaptive", "ancestral-10"}
    assert set(d["runs"]["flow"]) == {"euler-1", "euler-4", "dopri5-adaptive"}
    anc = d["runs"]["dm"]["ancestral-10"]
    assert anc["metrics"]["nfe"] == 10 and len(anc["times"]) == 11 and anc["metrics"]["w2"] > 0
    # the last dopri5 frame is the solve's endpoint from the same seeded noise (16-bit grid)
    x0 = noise(40, (2,), 0, "explorer-noise")
    for name in ("dm", "flow"):
        end = solve(Checkpoint(two_models / name).velocity(), x0, "dopri5").x.numpy()
        got = _frames(d["runs"][name]["dopri5-adaptive"], 40)[-1]
        assert np.abs(got - end).max() < 1e-3 * (np.ptp(end) + 1), name
    # refusals: an existing page, a page inside an input folder, not an .html name
    for target, extra, message in ((page, [], "already exists"),
                                   (two_models / "dm" / "p.html", [], "inside the input"),
                                   (tmp_path / "p.txt", [], "should end in .html")):
        code, _, err = cli("explore", "--ckpt", two_models / "dm", "--out", target, *args, *extra)
        assert code == 2 and message in err, err
    assert not (two_models / "dm" / "p.html").exists()
    # a run folder (here: the folder holding both models) and --overwrite
    code, _, err = cli("explore", "--ckpt", two_models, "--out", page, "--overwrite", *args)
    assert code == 0 and set(_embedded(page)["models"]) == {"dm", "flow"}, err
    # in the browser: the ancestral sampler is offered for the diffusion model only
    browser.get(page.as_uri() + "#model=dm&choice=ancestral-10&t=0.5")
    browser.refresh()
    state = browser.execute_script("return window.explorer.state")
    assert (state["model"], state["choice"]) == ("dm", "ancestral-10")
    assert "n/a" in browser.find_element("id", "metrics-table").text   # flow has no such run
    Select(browser.find_element("id", "model-select")).select_by_value("flow")
    state = browser.execute_script("return window.explorer.state")
    assert (state["model"], state["choice"]) == ("flow", "euler-1")
    option = browser.find_element("css selector", '#choice-select option[value="ancestral-10"]')
    assert option.get_attribute("disabled") and "not available" in option.text
    assert _errors(browser) == []
