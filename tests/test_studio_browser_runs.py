"""The studio in headless Chromium (Selenium): Stop during a run then "Continue N steps" (the status line's step
count goes on past the stop), and a click in the Gallery tab that puts the run's prompt back into the form.
Micro CLIP, a 64 x 48 photo at 64 px, a few steps."""
from __future__ import annotations

import re

import pytest
from browser_helpers import fill, headless_chromium, wait_for
from studio_server import MICRO_CLIP, ROOT, running_studio

from clipstyle_opt.imageio import load_image, resize, to_pil

pytest.importorskip("gradio")
pytestmark = pytest.mark.filterwarnings("ignore:.*(no_silent_downcasting|copy keyword).*")
STEP = re.compile(r"step (\d+) / (\d+)")


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    with headless_chromium(tmp_path_factory.mktemp("chrome-profile"), "the studio's browser tests",
                           window="1400,1500") as driver:
        yield driver


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    with running_studio(tmp_path_factory.mktemp("out"), preview_every=0) as (demo, url):
        yield demo, url


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    path = tmp_path_factory.mktemp("photo") / "small.png"
    to_pil(resize(load_image(ROOT / "examples" / "astronaut.png"), (48, 64))).save(path)
    return path




def status(driver) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, "#status").text


def open_page(driver, url: str, photo) -> None:
    from selenium.webdriver.common.by import By

    driver.get(url)
    upload = wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, "#photo input[type=file]"), 60, "the photo input")
    upload[0].send_keys(str(photo))
    wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, "#photo img"), 60, "the uploaded photo")


def tab(driver, name: str) -> None:
    from selenium.webdriver.common.by import By

    buttons = [b for b in driver.find_elements(By.CSS_SELECTOR, "button[role=tab]") if b.text.strip() == name]
    buttons[0].click()


def test_stop_during_a_run_then_continue_goes_on_counting(browser, studio, photo):
    from selenium.webdriver.common.by import By

    open_page(browser, studio[1], photo)
    fill(browser, "#prompt1 textarea", "red stripes")
    fill(browser, "#setting-steps input", "200")
    fill(browser, "#setting-size input[type=number]", "64")
    browser.find_element(By.CSS_SELECTOR, "#stylize").click()
    wait_for(lambda: (m := STEP.search(status(browser))) and int(m.group(1)) >= 2, 120, "step 2 of the run")
    browser.find_element(By.CSS_SELECTOR, "#stop").click()
    wait_for(lambda: "interrupted" in status(browser), 60, "the stopped run")
    stopped = int(STEP.search(status(browser)).group(1))
    assert 2 <= stopped < 200
    fill(browser, "#more input", "3")
    browser.find_element(By.CSS_SELECTOR, "#continue").click()
    wait_for(lambda: "done" in status(browser), 120, "the continued run")
    step, total = map(int, STEP.search(status(browser)).groups())
    assert step == total == stopped + 3, status(browser)


def test_a_gallery_click_restores_the_run_s_prompt(browser, studio, photo, tmp_path):
    from gradio_client import Client, handle_file
    from selenium.webdriver.common.by import By

    client = Client(studio[1], verbose=False, download_files=str(tmp_path))
    client.predict(handle_file(str(photo)), "green dots", "preview", 2, 64, 7, MICRO_CLIP, api_name="/stylize")
    open_page(browser, studio[1], photo)  # a new page: the gallery is read from --output-dir when it loads
    fill(browser, "#prompt1 textarea", "something else")
    tab(browser, "Gallery")
    thumbnails = wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#gallery button.thumbnail-item"), 30,
                          "the gallery's thumbnails")
    thumbnails[0].click()  # the newest run: the API's "green dots"
    tab(browser, "Stylize")
    prompt = browser.find_element(By.CSS_SELECTOR, "#prompt1 textarea")
    wait_for(lambda: prompt.get_attribute("value") == "green dots", 30, "the restored prompt")
    assert browser.find_element(By.CSS_SELECTOR, "#setting-seed input").get_attribute("value") == "7"


def test_a_mask_painted_on_the_photo_limits_the_style(browser, studio, photo):
    """A brush stroke in the mask editor (the photo is its background): the run's sidecar records the painted mask,
    and where nothing was painted the result is the photo's pixels."""
    import json

    import numpy as np
    from PIL import Image
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    from clipstyle_opt.studio.gallery import read_gallery

    open_page(browser, studio[1], photo)
    fill(browser, "#prompt1 textarea", "red stripes")
    fill(browser, "#setting-steps input", "2")
    fill(browser, "#setting-size input[type=number]", "64")
    next(a for a in browser.find_elements(By.CSS_SELECTOR, "button.label-wrap") if "mask" in a.text).click()
    editor = wait_for(lambda: [e for e in browser.find_elements(By.CSS_SELECTOR, "#mask-paint") if e.is_displayed()],
                      30, "the mask editor")[0]
    canvas = wait_for(lambda: editor.find_elements(By.CSS_SELECTOR, "canvas"), 30, "the editor's canvas")[0]
    editor.find_element(By.CSS_SELECTOR, "button[aria-label=Brush]").click()
    ActionChains(browser).move_to_element(canvas).click_and_hold().move_by_offset(30, 0).release().perform()
    before = {item.image for item in read_gallery(studio[0].studio.options.output_dir)}
    browser.find_element(By.CSS_SELECTOR, "#stylize").click()
    wait_for(lambda: "step 2 / 2" in status(browser) and "done" in status(browser), 120, "the masked run")
    new = [item for item in read_gallery(studio[0].studio.options.output_dir) if item.image not in before]
    assert len(new) == 1 and new[0].metadata["mask"]["path"], json.dumps(new[0].metadata)[:300]
    mask = np.asarray(Image.open(new[0].metadata["mask"]["path"]).convert("L"))
    assert 0 < (mask > 0).mean() < 1  # the stroke, not the whole photo
    got = np.asarray(Image.open(new[0].image).convert("RGB"))
    original = np.asarray(Image.open(photo).convert("RGB"))
    assert np.array_equal(got[mask == 0], original[mask == 0])
