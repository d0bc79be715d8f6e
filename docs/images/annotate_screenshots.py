"""Make the screenshots of docs/annotate.md: the page in headless Chromium (Selenium), driven as a user would.

    python docs/images/annotate_screenshots.py --video demo_out/data/eval/JPEGImages/480p/heldout003 \
        --mask demo_out/data/eval/Annotations/480p/heldout003/00000.png \
        --model demo_out/runs/paper/checkpoints/main_final.pth --out docs/images

Loads ``--mask`` onto frame 0 through the page's "Load mask PNG", propagates both ways, shows a later frame
(annotate_propagated.png), corrects it with a brush stroke (annotate_correct.png), propagates again and exports
the training set (annotate_export.png). The project is made in a temporary folder.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video", required=True)
    parser.add_argument("--mask", required=True, help="mask PNG of frame 0")
    parser.add_argument("--model", required=True)
    parser.add_argument("--out", default="docs/images")
    parser.add_argument("--frame", type=int, default=14, help="the frame shown and corrected")
    args = parser.parse_args()

    import uvicorn
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.action_chains import ActionChains

    from corrvos.annotate import Project, Propagator
    from corrvos.annotate.server import create_app
    from corrvos.cli import build_parser
    from corrvos.cli.annotate import core_factory
    from corrvos.models import load_model

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, Project.open(Path(tmp) / "clip.annotate", args.video) as project:
        cli = build_parser().parse_args(["annotate", "--video", args.video, "--model", args.model, "--device", "cpu"])
        make_core = core_factory(cli, load_model(args.model, map_location="cpu").eval(), project.size)
        app = create_app(project, Propagator(project, make_core))
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
        while not server.started:
            time.sleep(0.02)
        options = Options()
        options.binary_location = shutil.which("chromium") or "chromium"
        for flag in (
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--window-size=1300,900",
        ):
            options.add_argument(flag)
        driver = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))

        def wait(condition: str, timeout: float = 60) -> None:
            end = time.monotonic() + timeout
            while not driver.execute_script(f"return Boolean({condition});"):
                if time.monotonic() > end:
                    raise TimeoutError(condition)
                time.sleep(0.05)

        def settled() -> None:
            wait("document.body.dataset.ready === '1' && (document.body.dataset.saving || '0') === '0'")

        def propagate() -> None:
            driver.execute_script("document.body.dataset.job = 'asked';")
            driver.find_element("id", "propagate-both").click()
            wait("document.body.dataset.job === 'done' && document.getElementById('cancel').disabled")
            settled()

        def goto(frame: int) -> None:
            driver.execute_script(f"document.getElementById('slider').value = {frame};")
            driver.execute_script("document.getElementById('slider').dispatchEvent(new Event('input'));")
            wait(f"document.body.dataset.frame === '{frame}'")
            settled()

        try:
            driver.get(f"http://127.0.0.1:{sock.getsockname()[1]}/")
            settled()
            driver.find_element("id", "load-mask").send_keys(str(Path(args.mask).resolve()))
            wait("window.annotate.project.annotated.includes(0)")
            settled()
            propagate()
            goto(args.frame)
            driver.save_screenshot(str(out / "annotate_propagated.png"))
            canvas = driver.find_element("id", "draw-canvas")
            zoom, rect = driver.execute_script("return window.annotate.zoom;"), canvas.rect
            h, w = project.size
            stroke = [(w * 0.45, h * 0.5), (w * 0.55, h * 0.55)]
            chain = ActionChains(driver)
            for k, (x, y) in enumerate(stroke):
                chain = chain.move_to_element_with_offset(
                    canvas, round(x * zoom - rect["width"] / 2), round(y * zoom - rect["height"] / 2)
                )
                chain = chain.click_and_hold() if k == 0 else chain
            chain.release().perform()
            wait(f"window.annotate.project.annotated.includes({args.frame})")
            settled()
            driver.save_screenshot(str(out / "annotate_correct.png"))
            propagate()
            driver.find_element("id", "export-training-set").click()
            wait("document.getElementById('export-status').textContent.startsWith('training-set')")
            driver.save_screenshot(str(out / "annotate_export.png"))
        finally:
            driver.quit()
            server.should_exit = True


if __name__ == "__main__":
    main()
