"""The participant page in headless Chromium: consent, 3 screens rated by keys and by clicks, resume
after a reload, the completion code, and the ratings in the database; a pairwise screen by arrow keys.

Needs Debian's ``chromium`` and ``chromium-driver`` like tests/test_report.py; without them it fails with a
line saying what to install (a skipped browser test would hide a broken page)."""
from __future__ import annotations

import time

import pytest

from browser_helpers import headless_chromium

from clipstyle_opt.study.create import create_study
from clipstyle_opt.study.records import load_records
from clipstyle_opt.study.schema import open_engine
from clipstyle_opt.study.server import ThreadedServer
from study_helpers import method_dirs



@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    with headless_chromium(tmp_path_factory.mktemp("chrome-profile"), "the study's browser test", window="1200,900") as driver:
        yield driver


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    folders = method_dirs(root / "outs")
    db = str(root / "web.sqlite")
    made = create_study(db, "web", folders, per_item=1, per_rater=3, checks=False, seed=5)
    create_study(db, "duel", folders, design="pairwise", per_item=1, per_rater=1, checks=False, seed=5)
    with ThreadedServer(db) as server:
        yield db, server.url, made.admin_token


def wait_for(driver, script: str, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = driver.execute_script(script)
        if value:
            return value
        time.sleep(0.05)
    message = driver.execute_script("return document.getElementById('message').textContent")
    raise AssertionError(f"timed out waiting for: {script}\nmessage on the page: {message}")


def wait_screen(driver, number: int) -> None:
    wait_for(driver, f"var c = document.getElementById('count'); return !document.getElementById('rating').hidden"
                     f" && c.textContent.indexOf('Screen {number} of') === 0;")


def press(driver, key: str) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(driver).send_keys(key).perform()


def click_answer(driver, question: str, value: int) -> None:
    driver.find_element("css selector", f'.question[data-key="{question}"] button[data-value="{value}"]').click()


def test_three_screens_by_keys_and_clicks_resume_and_end_with_a_code(browser, served):
    db, url, _ = served
    browser.get(f"{url}/s/web?pid=abc-1")
    wait_for(browser, "return !document.getElementById('consent').hidden;")
    browser.find_element("id", "start").click()
    wait_screen(browser, 1)
    assert browser.execute_script("return document.querySelectorAll('#images img').length") == 2
    # Images only: nothing on the page names a method.
    assert not any(m in browser.page_source for m in ("adain", "baseline", "ours"))
    press(browser, "4")
    press(browser, "2")  # the second key answers the second question and submits
    wait_screen(browser, 2)
    browser.refresh()  # reopening the link resumes on the next screen
    wait_screen(browser, 2)
    click_answer(browser, "style", 5)
    click_answer(browser, "content", 1)
    wait_screen(browser, 3)
    press(browser, "3")
    click_answer(browser, "content", 2)
    code = wait_for(browser, "return !document.getElementById('done').hidden && "
                             "document.getElementById('code').textContent;")
    records = load_records(open_engine(db), "web")
    assert [r["participant"] for r in records.raters] == ["abc-1"] and records.raters[0]["code"] == code
    answers = records.answers()[records.raters[0]["id"]]
    sheet = records.sheets[records.raters[0]["sheet_id"]]
    assert [answers[item] for item in sheet] == [{"style": 4, "content": 2}, {"style": 5, "content": 1},
                                                 {"style": 3, "content": 2}]


def test_a_pairwise_screen_by_arrow_keys(browser, served):
    db, url, _ = served
    browser.get(f"{url}/s/duel")
    wait_for(browser, "return !document.getElementById('consent').hidden;")
    browser.find_element("id", "start").click()
    wait_screen(browser, 1)
    roles = browser.execute_script("return Array.from(document.querySelectorAll('#images img'))"
                                   ".map(function (i) { return i.getAttribute('data-role'); });")
    assert roles == ["photo", "left", "right"]
    left = browser.execute_script("return document.querySelector('img[data-role=left]').src")
    press(browser, "\ue012")   # ArrowLeft: style -> the left image
    press(browser, "\ue014")   # ArrowRight: content -> the right image
    wait_for(browser, "return !document.getElementById('done').hidden;")
    records = load_records(open_engine(db), "duel")
    (item_id, answers), = records.answers()[records.raters[0]["id"]].items()
    outputs = [o["sha256"] for o in records.items[item_id]["outputs"]]
    left_index = 1 if left.endswith(outputs[0]) else 2  # stored 1/2 = the item's first/second output
    assert answers == {"style": left_index, "content": 3 - left_index}


def test_the_admin_page_shows_progress_with_the_token_and_refuses_without(browser, served):
    db, url, admin = served
    browser.get(f"{url}/s/web/admin")
    wait_for(browser, "return !document.getElementById('login').hidden;")
    browser.find_element("id", "token").send_keys("wrong-token")
    browser.find_element("css selector", "#login button").click()
    assert "admin token" in wait_for(browser, "return document.getElementById('message').textContent;")
    browser.get(f"{url}/s/web/admin#token={admin}")
    totals = wait_for(browser, "return !document.getElementById('view').hidden && "
                               "document.getElementById('totals').textContent;")
    records = load_records(open_engine(db), "web")
    assert f"raters: {len(records.raters)}" in totals and f"ratings stored: {len(records.ratings)}" in totals
    rows = browser.execute_script("return document.querySelectorAll('#items tbody tr').length")
    assert rows == sum(1 for item in records.items.values() if item["kind"] == "main")
