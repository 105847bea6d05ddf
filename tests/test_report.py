"""`clipstyle report`: the data it gathers, and the page itself driven in headless Chromium.

The browser tests need Debian's ``chromium`` and ``chromium-driver`` (CI's
``.ci/run`` installs them). Without them they fail, on purpose, with a line
saying what to install: a skipped browser test would hide a broken page.
"""
from __future__ import annotations

import base64
import csv
import io
import json
import re
import time
from pathlib import Path

import pytest

from browser_helpers import headless_chromium
from click.testing import CliRunner
from PIL import Image

from clipstyle_opt.cli import cli
from clipstyle_opt.config import StyleConfig
from clipstyle_opt.errors import ConfigError, ImageReadError, OutputExistsError
from clipstyle_opt.evaluate import write_json
from clipstyle_opt.imageio import load_image, save_image
from clipstyle_opt.report import build_report_data, collect_outputs, config_differences, render_html, write_report

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
TRICKY_PROMPT = 'fire </script><b>bold</b> & "quotes"'
# Fake metrics (a report only displays them): per output file.
FAKE = {
    "a.png": {"lpips_vgg": 0.30, "clip_score": 0.20},
    "b.png": {"lpips_vgg": 0.10, "clip_score": 0.25},
    "c.png": {"lpips_vgg": 0.20, "clip_score": 0.30},
    "d.png": {"lpips_vgg": 0.50, "clip_score": 0.10},
    # e.png: no metrics (sorts last)
}


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def _tinted(path: Path, size: tuple[int, int], tint: tuple[float, float, float]):
    with Image.open(path) as opened:
        image = load_image(opened.convert("RGB").resize(size))
    return (image * image.new_tensor(tint).view(1, 3, 1, 1)).clamp(0, 1)


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    """photos/ (2 content photos), outs/ (5 outputs with sidecars + a step image), metrics.json."""
    root = tmp_path_factory.mktemp("study")
    (root / "photos").mkdir()
    for name in ("chelsea", "coffee"):
        with Image.open(EXAMPLES / f"{name}.png") as photo:
            photo.convert("RGB").resize((120, 80)).save(root / "photos" / f"{name}.png")
    chelsea, coffee = str(root / "photos" / "chelsea.png"), str(root / "photos" / "coffee.png")
    reference = StyleConfig().to_dict()
    specs = [
        ("a.png", chelsea, "fire", reference, {}, (1.0, 0.6, 0.6), (120, 80)),
        ("b.png", chelsea, TRICKY_PROMPT, StyleConfig(steps=100, lambda_c=300.0).to_dict(), {}, (0.6, 1.0, 0.6),
         (120, 80)),
        ("c.png", chelsea, "fire", None, {"method": "AdaIN+CLIP"}, (0.6, 0.6, 1.0), (120, 80)),
        ("d.png", coffee, "water", reference, {}, (1.0, 1.0, 0.5), (900, 600)),  # large: gets shrunk
        ("e.png", coffee, "water", StyleConfig(seed=3).to_dict(), {}, (0.5, 1.0, 1.0), (120, 80)),
    ]
    outs = root / "outs"
    for name, content, prompt, config, extra, tint, size in specs:
        metadata = {"tool": "clipstyle_opt", "prompt": prompt, "content": content, **extra}
        if config is not None:
            metadata["config"] = config
        source = EXAMPLES / ("chelsea.png" if content == chelsea else "coffee.png")
        save_image(_tinted(source, size, tint), outs / name, metadata)
    # An intermediate image of --save-every: PNG metadata with a step, no sidecar. Not an output.
    save_image(_tinted(EXAMPLES / "chelsea.png", (64, 40), (1, 1, 1)), outs / "a_steps" / "step_00001.png",
               {"prompt": "fire", "step": 1}, sidecar=False)
    rows = [{"image": str(outs / name), **values} for name, values in FAKE.items()]
    write_json(rows, root / "metrics.json", settings={"note": "fake"})
    return root


@pytest.fixture(scope="module")
def page(study) -> Path:
    return write_report(study / "outs", study / "report.html", metrics_file=study / "metrics.json", max_side=256)


# --- data and HTML, no browser ------------------------------------------

def test_collects_outputs_and_skips_steps_and_photos(study):
    names = [path.name for path, _ in collect_outputs(study)]
    assert names == ["a.png", "b.png", "c.png", "d.png", "e.png"]


def test_config_differences_between_outputs_and_from_defaults():
    defaults = StyleConfig().to_dict()
    configs = [defaults, StyleConfig(steps=100, lambda_c=300.0).to_dict(), {}]
    assert sorted(config_differences(configs)) == ["lambda_c", "steps"]
    assert config_differences([defaults, defaults]) == []
    assert config_differences([StyleConfig(seed=3).to_dict()]) == ["seed"]


def test_report_data_groups_by_content_and_shrinks_images(study):
    rows = json.loads((study / "metrics.json").read_text())["results"]
    data = build_report_data(study / "outs", metric_rows=rows, max_side=256)
    assert [g["content_name"] for g in data["groups"]] == ["chelsea.png", "coffee.png"]
    first, second = data["groups"]
    assert [o["label"] for o in first["outputs"]] == ["a", "b", "AdaIN+CLIP"]
    assert dict(first["outputs"][1]["config"]) == {"lambda_c": "300.0", "steps": "100"}
    assert dict(first["outputs"][0]["config"]) == {"lambda_c": "150.0", "steps": "200"}
    assert first["outputs"][2]["config"] == []
    assert dict(second["outputs"][1]["config"]) == {"seed": "3"}
    assert [m["key"] for m in data["metrics"]] == ["clip_score", "lpips_vgg"]
    assert second["outputs"][1]["metrics"] == {}
    big = second["outputs"][0]
    assert (big["width"], big["height"]) == (900, 600)
    with Image.open(io.BytesIO(base64.b64decode(big["src"].split(",", 1)[1]))) as shrunk:
        assert max(shrunk.size) == 256
    assert first["content"]["src"].startswith("data:image/jpeg;base64,")


def test_page_is_self_contained_and_escapes_text(page):
    html = page.read_text()
    assert "http://" not in html and "https://" not in html
    assert not re.search(r"<link|@import|<iframe", html)
    assert html.count("<script") == 2 and TRICKY_PROMPT not in html  # the prompt's </script> is escaped
    assert len(html) < 400_000


def test_refusals_and_errors(study, tmp_path):
    with pytest.raises(OutputExistsError):
        write_report(study / "outs", study / "report.html", metrics_file=study / "metrics.json")
    with pytest.raises(ConfigError):
        write_report(study / "outs", tmp_path / "r.html", metrics_file=study / "metrics.json", clip_model="x")
    with pytest.raises(ConfigError):
        write_report(study / "outs", tmp_path / "r.txt")
    with pytest.raises(ImageReadError, match="no outputs"):
        write_report(study / "photos", tmp_path / "r.html")
    result = run("report", study / "outs", "-o", study / "report.html")
    assert result.exit_code == 1 and "--overwrite" in result.output


def test_cli_report_without_metrics(study, tmp_path):
    result = run("report", study / "outs", "-o", tmp_path / "plain.html", "--max-side", "128", "--title", "T & T")
    assert result.exit_code == 0, result.output
    html = (tmp_path / "plain.html").read_text()
    data = json.loads(re.search(r'id="report-data">(.*?)</script>', html, re.S).group(1))
    assert data["metrics"] == [] and data["title"] == "T & T"
    assert all(o["metrics"] == {} for g in data["groups"] for o in g["outputs"])


def test_cli_report_computes_metrics_with_a_clip_model(study, tiny_clip_path, tmp_path):
    result = run("report", study / "outs", "-o", tmp_path / "m.html", "--clip-model", tiny_clip_path,
                 "--device", "cpu", "--size", "128")
    assert result.exit_code == 0, result.output
    html = (tmp_path / "m.html").read_text()
    data = json.loads(re.search(r'id="report-data">(.*?)</script>', html, re.S).group(1))
    assert len(data["metrics"]) == 8
    assert all(len(o["metrics"]) == 8 for g in data["groups"] for o in g["outputs"])


def test_render_html_round_trips_the_data():
    data = {"title": "<x>", "metrics": [], "groups": []}
    html = render_html(data)
    blob = re.search(r'id="report-data">(.*?)</script>', html, re.S).group(1)
    assert json.loads(blob) == data and "<title>&lt;x&gt;</title>" in html


# --- in the browser -------------------------------------------------------

@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    downloads = tmp_path_factory.mktemp("downloads")
    prefs = {"download.default_directory": str(downloads), "download.prompt_for_download": False}
    with headless_chromium(tmp_path_factory.mktemp("chrome-profile"), "the report's browser tests",
                           prefs=prefs) as driver:
        driver.downloads = downloads
        try:
            driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
        except Exception:  # older drivers: the prefs above still apply
            pass
        yield driver


@pytest.fixture
def loaded(browser, page):
    browser.get(page.as_uri())
    return browser


def order(driver, group: int = 0) -> list[str]:
    return driver.execute_script(
        "return Array.from(document.querySelectorAll("
        "'section[data-group=\"' + arguments[0] + '\"] figure.output-card'))"
        ".map(function (f) { return f.querySelector('.file').textContent; });", group)


def click(driver, selector: str):
    driver.find_element("css selector", selector).click()


def test_page_renders_every_image_with_its_text(loaded):
    images = loaded.execute_script(
        "return Array.from(document.images)"
        ".map(function (i) { return [i.className, i.complete && i.naturalWidth > 0]; });")
    assert sorted(cls for cls, _ in images) == ["content-img"] * 2 + ["output-img"] * 5
    assert all(ok for _, ok in images), images
    assert order(loaded, 0) == ["a.png", "b.png", "c.png"] and order(loaded, 1) == ["d.png", "e.png"]
    labels = [el.text for el in loaded.find_elements("css selector", "figure.output-card .label")]
    assert labels == ["a", "b", "AdaIN+CLIP", "d", "e"]
    prompts = [el.text for el in loaded.find_elements("css selector", "figure.output-card .prompt")]
    assert prompts[1] == f"\u201c{TRICKY_PROMPT}\u201d"  # shown as text, not markup
    assert loaded.find_elements("css selector", ".prompt b") == []
    metric_cells = loaded.find_elements("css selector",
                                        "figure.output-card table.metrics tr[data-metric='lpips_vgg'] td.value")
    assert [c.text for c in metric_cells] == ["0.3000", "0.1000", "0.2000", "0.5000", "\u2013"]
    assert not loaded.find_element("css selector", "figure.output-card .rating").is_displayed()
    severe = [entry for entry in loaded.get_log("browser") if entry.get("level") == "SEVERE"]
    assert severe == []


def test_sorting_by_a_metric_reorders_the_outputs(loaded):
    click(loaded, "button.sort-btn[data-key='lpips_vgg']")  # lower is better: best (lowest) first
    assert order(loaded, 0) == ["b.png", "c.png", "a.png"]
    assert order(loaded, 1) == ["d.png", "e.png"]  # e has no value: last
    button = loaded.find_element("css selector", "button.sort-btn[data-key='lpips_vgg']")
    assert button.get_attribute("data-dir") == "asc"
    click(loaded, "button.sort-btn[data-key='lpips_vgg']")  # again: reversed
    assert order(loaded, 0) == ["a.png", "c.png", "b.png"]
    assert button.get_attribute("data-dir") == "desc"
    click(loaded, "button.sort-btn[data-key='clip_score']")  # higher is better: highest first
    assert order(loaded, 0) == ["c.png", "b.png", "a.png"]
    click(loaded, "button.sort-btn[data-key='']")
    assert order(loaded, 0) == ["a.png", "b.png", "c.png"]


def _rate(driver, output_id: int, kind: str, value: int):
    click(driver, f"#rate-{kind}-{output_id}-{value}")


def _csv_rows(text: str) -> dict[str, dict[str, str]]:
    return {row["output"]: row for row in csv.DictReader(io.StringIO(text))}


def test_ratings_export_as_csv(loaded):
    click(loaded, "#rating-mode")
    assert loaded.find_element("css selector", "figure.output-card .rating").is_displayed()
    loaded.find_element("css selector", "#rater").send_keys("rater-7")
    clicked = {0: (4, 5), 2: (2, 3), 3: (1, None)}  # output id -> (style, content); ids follow file order
    for output_id, (style, content) in clicked.items():
        _rate(loaded, output_id, "style", style)
        if content is not None:
            _rate(loaded, output_id, "content", content)
    _rate(loaded, 0, "style", 3)  # a change of mind: the last click counts
    clicked[0] = (3, 5)
    click(loaded, "#export-ratings")
    text = loaded.find_element("css selector", "#ratings-csv").get_attribute("value")
    assert text == loaded.execute_script("return window.ratingsCSV();")
    rows = _csv_rows(text)
    assert list(rows) == ["a.png", "b.png", "c.png", "d.png", "e.png"]
    files = ["a.png", "b.png", "c.png", "d.png", "e.png"]
    for output_id, name in enumerate(files):
        style, content = clicked.get(output_id, (None, None))
        assert rows[name]["style_rating"] == (str(style) if style else ""), name
        assert rows[name]["content_rating"] == (str(content) if content else ""), name
        assert rows[name]["rater"] == "rater-7" and rows[name]["blind"] == "0"
    assert rows["b.png"]["prompt"] == TRICKY_PROMPT and rows["c.png"]["label"] == "AdaIN+CLIP"
    assert rows["d.png"]["content_image"] == "coffee.png"
    assert loaded.find_element("css selector", "#rated-count").text.startswith("2 of 5")
    # The button also saves the CSV through a Blob download: it lands in the browser's download folder.
    target = Path(loaded.downloads) / "ratings.csv"
    deadline = time.monotonic() + 10
    while not (target.exists() and target.read_text() == text) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert target.read_text() == text


def test_blind_mode_hides_labels_shuffles_and_keeps_ratings(loaded):
    click(loaded, "#rating-mode")
    _rate(loaded, 1, "style", 5)
    click(loaded, "#blind")
    hidden = loaded.find_elements("css selector", ".label, .config, table.metrics, .file")
    assert hidden and not any(el.is_displayed() for el in hidden)
    assert [el.text for el in loaded.find_elements("css selector", "section[data-group='0'] .blind-label")] == \
        ["Output A", "Output B", "Output C"]
    assert loaded.find_element("css selector", "button.sort-btn[data-key='lpips_vgg']").get_attribute("disabled")
    orders = set()
    for seed in range(6):
        seed_box = loaded.find_element("css selector", "#shuffle-seed")
        seed_box.clear()
        seed_box.send_keys(str(seed))
        loaded.execute_script("document.getElementById('shuffle-seed').dispatchEvent(new Event('change'));")
        shown = loaded.execute_script(
            "return Array.from(document.querySelectorAll('section[data-group=\"0\"] figure.output-card'))"
            ".map(function (f) { return Number(f.getAttribute('data-output-id')); });")
        assert sorted(shown) == [0, 1, 2]
        orders.add(tuple(shown))
        assert loaded.find_element("css selector", "#rate-style-1-5").is_selected()  # survives reshuffles
        rows = _csv_rows(loaded.execute_script("return window.ratingsCSV();"))
        files = ["a.png", "b.png", "c.png"]
        assert [int(rows[files[i]]["position"]) for i in shown] == [1, 2, 3]
        assert rows["b.png"]["blind"] == "1" and rows["b.png"]["shuffle_seed"] == str(seed)
        assert rows["b.png"]["style_rating"] == "5"
    assert len(orders) > 1  # the seed changes the order
