"""The rating page screenshot of docs/guides/study.md (docs/images/study_rating_page.png).

Builds a two-method mos study from examples/chelsea.png (the "outputs" are colour-shifted copies of the
photo: the picture shows the page, not a result), serves it on a free loopback port, opens the
participant link in headless Chromium, accepts the consent, answers the first question with key 4 and
saves the page as a PNG.

    python tools/study_screenshot.py [-o docs/images/study_rating_page.png]
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

from PIL import Image  # noqa: E402

from clipstyle_opt.imageio import save_image  # noqa: E402
from clipstyle_opt.study.create import create_study  # noqa: E402
from clipstyle_opt.study.server import ThreadedServer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", default=str(ROOT / "docs" / "images" / "study_rating_page.png"))
    args = parser.parse_args()
    os.environ["SE_OFFLINE"] = "true"  # selenium-manager must never download anything
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.action_chains import ActionChains

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        with Image.open(ROOT / "examples" / "chelsea.png") as opened:
            photo = opened.convert("RGB")
        photo.thumbnail((320, 320))
        photo.save(root / "chelsea.png")
        folders = []
        for method, shift in (("ours", (60, 10, -40)), ("baseline", (-20, 30, 50))):
            bands = [band.point(lambda v, s=s: max(0, min(255, v + s))) for band, s in zip(photo.split(), shift)]
            save_image(Image.merge("RGB", bands), root / method / "chelsea_fire.png",
                       {"prompt": "fire", "content": str(root / "chelsea.png"), "method": method})
            folders.append(root / method)
        db = str(root / "study.sqlite")
        create_study(db, "demo", folders, per_item=1, checks=False)
        options = webdriver.ChromeOptions()
        for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--window-size=1000,760",
                    "--disable-background-networking", "--no-first-run", f"--user-data-dir={root / 'chrome'}"):
            options.add_argument(arg)
        options.binary_location = "/usr/bin/chromium"
        driver = webdriver.Chrome(service=Service(executable_path="/usr/bin/chromedriver"), options=options)
        try:
            with ThreadedServer(db) as server:
                driver.get(f"{server.url}/s/demo?pid=PROLIFIC_ID")
                time.sleep(1.0)
                driver.find_element("id", "start").click()
                deadline = time.monotonic() + 20
                while not driver.execute_script(
                        "var i = document.querySelectorAll('#images img'); return i.length === 2 && "
                        "Array.from(i).every(function (x) { return x.complete && x.naturalWidth > 0; });"):
                    if time.monotonic() > deadline:
                        raise SystemExit("the rating page did not show its images")
                    time.sleep(0.1)
                ActionChains(driver).send_keys("4").perform()
                time.sleep(0.3)
                driver.save_screenshot(str(root / "shot.png"))
        finally:
            driver.quit()
        with Image.open(root / "shot.png") as shot:
            shot.convert("RGB").quantize(colors=128).save(args.output, optimize=True)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
