"""The studio in headless Chromium (Selenium, as tests/test_report.py drives it): upload a photo, type a prompt,
press Stylize, see a preview and then the final image, move the strength slider and see the image change."""
from __future__ import annotations

import pytest
from browser_helpers import fill, headless_chromium, wait_for
from studio_server import ROOT, running_studio

from clipstyle_opt.imageio import load_image, resize, to_pil

pytest.importorskip("gradio")
pytestmark = pytest.mark.filterwarnings("ignore:.*(no_silent_downcasting|copy keyword).*")


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    with headless_chromium(tmp_path_factory.mktemp("chrome-profile"), "the studio's browser test", window="1400,1500") as driver:
        yield driver




def test_upload_prompt_stylize_watch_and_blend(browser, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    photo = tmp_path / "small.png"
    to_pil(resize(load_image(ROOT / "examples" / "astronaut.png"), (48, 64))).save(photo)
    with running_studio(tmp_path / "out", preview_every=0) as (_, url):
        browser.get(url)
        upload = wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#photo input[type=file]"), 120,
                          "the photo input")
        upload[0].send_keys(str(photo))
        wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#photo img"), 60, "the uploaded photo")
        fill(browser, "#prompt1 textarea", "red stripes")
        fill(browser, "#setting-steps input", "5")
        fill(browser, "#setting-size input[type=number]", "64")

        def shown() -> str | None:
            images = browser.find_elements(By.CSS_SELECTOR, "#shown img")
            return images[0].get_attribute("src") if images else None

        def status() -> str:
            return browser.find_element(By.CSS_SELECTOR, "#status").text

        browser.find_element(By.CSS_SELECTOR, "#stylize").click()
        seen: list[tuple[str, str]] = []

        def finished() -> bool:
            text, src = status(), shown()
            if src and (not seen or seen[-1][1] != src):
                seen.append((text, src))
            return "done" in text

        wait_for(finished, 600, "the final image")
        final = shown()
        previews = [src for text, src in seen if "done" not in text and src != final]
        assert previews, f"no preview before the final image: {seen}"
        assert final and "step 5 / 5" in status()

        slider = browser.find_element(By.CSS_SELECTOR, "#strength input[type=range]")
        ActionChains(browser).move_to_element_with_offset(slider, -slider.size["width"] // 4, 0).click().perform()
        wait_for(lambda: shown() not in (None, final), 120, "the blended image")
        browser.save_screenshot(str(tmp_path / "studio.png"))
        assert (tmp_path / "studio.png").stat().st_size > 10_000
