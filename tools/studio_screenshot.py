"""The guide's screenshot of the studio in the middle of a run (docs/images/studio_midrun.png), made offline
with the bundled micro CLIP (tests/data/micro_clip.pt) in headless Chromium.

    python tools/studio_screenshot.py [--out docs/images/studio_midrun.png]
    python tools/studio_screenshot.py --focus "red stripes" --out docs/images/studio_focus.png

Starts the studio on a free loopback port, uploads examples/astronaut.png, types "red stripes", sets 40 steps at
128 px (with ``--focus``, types that focus text, whose relevance map then shows beside the image), presses
Stylize, waits for the loss curve to hold several steps, takes the screenshot, presses Stop.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ["SE_OFFLINE"] = "true"  # selenium-manager must never download anything

from studio_server import running_studio  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "images" / "studio_midrun.png"))
    parser.add_argument("--at-step", type=int, default=4, help="take the screenshot once this step is shown")
    parser.add_argument("--focus", default=None, help="a focus text (its relevance map shows beside the image)")
    args = parser.parse_args()
    from PIL import Image
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    options = webdriver.ChromeOptions()
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--no-first-run", "--window-size=1300,1150"):
        options.add_argument(arg)
    options.binary_location = "/usr/bin/chromium"
    with tempfile.TemporaryDirectory() as tmp, running_studio(Path(tmp), preview_every=0.0) as (_, url):
        driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
        try:
            driver.get(url)
            deadline = time.monotonic() + 120
            while not driver.find_elements(By.CSS_SELECTOR, "#photo input[type=file]"):
                if time.monotonic() > deadline:
                    raise SystemExit("the page did not load")
                time.sleep(0.2)
            driver.find_element(By.CSS_SELECTOR, "#photo input[type=file]").send_keys(
                str(ROOT / "examples" / "astronaut.png"))
            for selector, text in (("#prompt1 textarea", "red stripes"), ("#setting-steps input", "40"),
                                   ("#setting-size input[type=number]", "128")):
                box = driver.find_element(By.CSS_SELECTOR, selector)
                box.send_keys(Keys.CONTROL, "a")
                box.send_keys(text, Keys.TAB)
            if args.focus:
                next(b for b in driver.find_elements(By.CSS_SELECTOR, "button.label-wrap") if "focus" in b.text).click()
                time.sleep(0.5)
                box = driver.find_element(By.CSS_SELECTOR, "#focus textarea")
                box.send_keys(args.focus, Keys.TAB)
            time.sleep(1)
            driver.find_element(By.CSS_SELECTOR, "#stylize").click()
            deadline = time.monotonic() + 1800
            while True:
                status = driver.find_element(By.CSS_SELECTOR, "#status").text
                if status.startswith("step ") and int(status.split()[1]) >= args.at_step:
                    break
                if time.monotonic() > deadline:
                    raise SystemExit(f"no step {args.at_step} in time: {status!r}")
                time.sleep(0.2)
            driver.execute_script("window.scrollTo(0, 0)")  # pressing Stylize scrolled the page
            time.sleep(1.5)  # let the preview and the curve draw
            shot = Path(tmp) / "shot.png"
            driver.save_screenshot(str(shot))
            driver.find_element(By.CSS_SELECTOR, "#stop").click()
            image = Image.open(shot).convert("RGB")
            image = image.resize((image.width * 3 // 4, image.height * 3 // 4), Image.Resampling.LANCZOS)
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            image = image.quantize(colors=128, method=Image.Quantize.MEDIANCUT)  # a small PNG for the docs
            image.save(args.out, optimize=True)
            print(f"wrote {args.out} ({image.width}x{image.height} px) at: {status}")
        finally:
            driver.quit()


if __name__ == "__main__":
    main()
