"""`corrvos annotate` in a real browser (issue #23 part 4): headless Chromium driven by Selenium.

Opens a synthetic video, draws an object with mouse strokes, propagates with a random STCN, corrects a frame (a
second object drawn as a polygon), propagates again, exports, and compares the exported PNGs with `corrvos segment`
run on the same annotations. Skipped where Selenium, Chromium or chromedriver is missing (``.ci/run`` installs
Debian's ``chromium`` and ``chromium-driver``). With ``CORRVOS_ANNOTATE_SCREENSHOTS=<folder>`` the test also saves
the screenshots of docs/annotate.md there.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("starlette")
webdriver = pytest.importorskip("selenium.webdriver")

from corrvos.annotate import Project, Propagator  # noqa: E402
from corrvos.annotate.server import create_app  # noqa: E402
from corrvos.data.io import read_label, write_image  # noqa: E402
from test_annotate_project import _make_core, _segment  # noqa: E402

H, W, N = 96, 160, 8  # a frame, frames


def _scene(t: int) -> np.ndarray:
    """A textured background with a red box moving right (object 1) and a blue box moving left (object 2)."""
    rng = np.random.default_rng(1)
    rgb = (rng.random((H, W, 3)) * 90).astype(np.uint8)
    rgb[20:50, 20 + 3 * t : 60 + 3 * t] = (230, 40, 40)
    rgb[55:85, 110 - 3 * t : 140 - 3 * t] = (40, 60, 230)
    return rgb


def _browser_paths() -> tuple[str, str] | None:
    chrome = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
    driver = shutil.which("chromedriver")
    return (chrome, driver) if chrome and driver else None


@pytest.fixture
def browser():
    paths = _browser_paths()
    if paths is None:
        pytest.skip("no chromium + chromedriver (Debian: apt-get install chromium chromium-driver)")
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = paths[0]
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,900", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(paths[1]))
    yield driver
    driver.quit()


@pytest.fixture
def server(tmp_path: Path, ckpt: Path):
    import uvicorn

    frames = tmp_path / "clip"
    for t in range(N):
        write_image(frames / f"{t:05d}.png", _scene(t))
    with Project.open(tmp_path / "clip.annotate", frames) as project:
        app = create_app(project, Propagator(project, _make_core(ckpt, frames, (H, W))))
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.02)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/", project, frames
        server.should_exit = True
        thread.join(10)
        sock.close()


def _wait(driver, condition: str, timeout: float = 60.0) -> None:
    """Wait until the JavaScript expression ``condition`` is true."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if driver.execute_script(f"return Boolean({condition});"):
            return
        time.sleep(0.05)
    message = driver.find_element("id", "message").text
    raise AssertionError(f"timed out waiting for {condition} (page message: {message!r})")


def _settled(driver) -> None:
    _wait(driver, "document.body.dataset.ready === '1' && (document.body.dataset.saving || '0') === '0'")


def _drag(driver, points: list[tuple[float, float]]) -> None:
    """A mouse stroke through image points (x, y): pressed at the first, released at the last."""
    from selenium.webdriver.common.action_chains import ActionChains

    canvas = driver.find_element("id", "draw-canvas")
    zoom = driver.execute_script("return window.annotate.zoom;")
    rect = canvas.rect

    def offset(x: float, y: float) -> tuple[int, int]:  # Selenium offsets are from the element's centre
        return round(x * zoom - rect["width"] / 2), round(y * zoom - rect["height"] / 2)

    chain = ActionChains(driver).move_to_element_with_offset(canvas, *offset(*points[0])).click_and_hold()
    for x, y in points[1:]:
        chain = chain.move_to_element_with_offset(canvas, *offset(x, y))
    chain.release().perform()


def _clicks(driver, points: list[tuple[float, float]]) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    canvas = driver.find_element("id", "draw-canvas")
    zoom = driver.execute_script("return window.annotate.zoom;")
    rect = canvas.rect
    for x, y in points:
        offset = round(x * zoom - rect["width"] / 2), round(y * zoom - rect["height"] / 2)
        ActionChains(driver).move_to_element_with_offset(canvas, *offset).click().perform()


def _propagate(driver, direction: str) -> None:
    driver.execute_script("document.body.dataset.job = 'asked';")  # not the 'done' of an earlier job
    driver.find_element("id", f"propagate-{direction}").click()
    _wait(driver, "document.body.dataset.job === 'done' && document.getElementById('cancel').disabled", 120)
    _settled(driver)


@pytest.mark.slow
def test_draw_propagate_correct_export_equals_segment(browser, server, tmp_path: Path, ckpt: Path) -> None:
    from selenium.webdriver.common.keys import Keys

    url, project, frames = server
    shots = os.environ.get("CORRVOS_ANNOTATE_SCREENSHOTS")
    browser.get(url)
    _settled(browser)
    assert browser.find_element("id", "frame-label").text.startswith("0 / 7")

    browser.find_element("id", "add-object").click()  # object 1, selected
    _wait(browser, "window.annotate.project.objects.length === 1")
    body = browser.find_element("tag name", "body")
    for _ in range(2):
        body.send_keys("]")  # brush 12 -> 16
    _drag(browser, [(28, 28), (52, 28), (52, 42), (28, 42), (40, 35)])  # paint the red box of frame 0
    _settled(browser)
    _wait(browser, "window.annotate.project.annotated.includes(0)")
    first = project.annotation(0)
    assert first[35, 40] == 1 and first[28, 28] == 1 and first[5, 5] == 0 and first[90, 150] == 0
    assert set(np.unique(first).tolist()) == {0, 1}
    body.send_keys("e")  # the eraser through the object, then ctrl+z restores the mask before that stroke
    _drag(browser, [(40, 20), (40, 50)])
    _settled(browser)
    _wait(browser, "window.annotate.label[35 * 160 + 40] === 0")
    _settled(browser)
    assert project.annotation(0)[35, 40] == 0
    body.send_keys(Keys.CONTROL, "z")
    _wait(browser, "window.annotate.label[35 * 160 + 40] === 1")
    _settled(browser)
    assert np.array_equal(project.annotation(0), first)
    body.send_keys("b")

    _propagate(browser, "both")
    assert project.mask(5)[1] == "propagated"
    if shots:
        browser.save_screenshot(str(Path(shots) / "annotate_propagated.png"))

    # correct frame 3: object 2 (the blue box) drawn as a polygon, then propagate again from both annotations
    for _ in range(3):
        body.send_keys("\ue014")  # right arrow
    _wait(browser, "document.body.dataset.frame === '3'")
    _settled(browser)
    browser.find_element("id", "add-object").click()
    _wait(browser, "window.annotate.project.objects.length === 2 && window.annotate.selected === 2")
    body.send_keys("p")
    _clicks(browser, [(103, 57), (127, 57), (127, 83), (103, 83)])
    body.send_keys("\ue007")  # Enter closes the polygon
    _settled(browser)
    _wait(browser, "window.annotate.project.annotated.includes(3)")
    corrected = project.annotation(3)
    assert corrected[70, 115] == 2 and corrected[60, 140] == 0 and corrected[70, 100] == 0
    if shots:
        browser.save_screenshot(str(Path(shots) / "annotate_correct.png"))

    _propagate(browser, "both")
    browser.find_element("id", "export-palette").click()
    _wait(browser, "document.getElementById('export-status').textContent.startsWith('palette')")
    exported = project.root / "exports" / "masks"
    theirs = _segment(ckpt, frames, project.annotations_dir, tmp_path / "seg")
    assert sorted(p.stem for p in exported.glob("*.png")) == sorted(theirs)
    for name, label in theirs.items():
        assert np.array_equal(read_label(exported / f"{name}.png"), label), name
    assert any(np.any(label == 2) for label in theirs.values())

    # a JPEG mask is refused with a message in the page, and changes nothing
    jpeg = tmp_path / "mask.jpg"
    write_image(jpeg, np.zeros((H, W, 3), np.uint8))
    before = project.annotation(3)
    browser.find_element("id", "load-mask").send_keys(str(jpeg))
    _wait(browser, "document.getElementById('message').textContent.includes('masks must be PNG')")
    assert np.array_equal(project.annotation(3), before)
    if shots:
        browser.find_element("id", "export-training-set").click()
        _wait(browser, "document.getElementById('export-status').textContent.startsWith('training-set')")
        browser.save_screenshot(str(Path(shots) / "annotate_export.png"))
