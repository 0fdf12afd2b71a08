"""An underwriter works a case in a real browser (Debian's headless Chromium)."""

from __future__ import annotations

import socket
import threading
import time
from datetime import date
from pathlib import Path

import pytest
import uvicorn
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from aios_pipelines.review.app import create_app
from aios_pipelines.review.store import ReviewStore

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def service(tmp_path):
    store = ReviewStore(f"sqlite:///{tmp_path / 'review.sqlite'}").create_all()
    _, token = store.add_user("uma", "underwriter")
    store.publish_cases(
        [
            {
                "application_id": "APP-BROWSER-1",
                "application_date": date(2026, 3, 2),
                "priority": "high",
                "due_hours": 24,
                "requires_four_eyes": False,
                "amount": 12_000,
                "pd": 0.27,
                "score_band": "E",
                "model_version": "3",
                "policy_version": "2026.11.1",
                "policy_rule": "review:grey_zone",
                "model_recommendation": "decline",
                "blind_review": False,
                "reasons": [{"code": "R07", "text": "Credit bureau score is low", "feature": "bureau_score"}],
                "quality_flags": ["bureau_score: missing, the model used its learned default for it"],
                "applicant_summary": {"annual_income": 41000, "loan_amount": 12000},
                "confidence": 0.4,
                "source": "batch",
            }
        ]
    )
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(store), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "the review service did not start"
    yield f"http://127.0.0.1:{port}", token, store
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture()
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1400,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def _eventually(condition, seconds: float = 15.0):
    """A click returns before the form's POST has landed: wait for its effect, then assert it."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def test_underwriter_logs_in_claims_and_declines_with_a_reason(service, browser):
    base, token, store = service
    browser.get(base + "/")
    assert "/login" in browser.current_url  # no session: the inbox asks for a token
    browser.find_element(By.NAME, "token").send_keys(token)
    browser.find_element(By.CSS_SELECTOR, "form[action='/login'] button").click()

    assert _eventually(lambda: "Review inbox" in browser.page_source)
    # the stylesheet loads under the Content-Security-Policy (no inline styles are allowed)
    assert browser.find_element(By.CSS_SELECTOR, "header.top").value_of_css_property("background-color") in (
        "rgb(24, 33, 47)", "rgba(24, 33, 47, 1)")
    browser.find_element(By.LINK_TEXT, "APP-BROWSER-1").click()
    assert _eventually(lambda: "Claim this case" in browser.page_source)
    page = browser.page_source
    for expected in ("0.2700", "R07", "Credit bureau score is low", "review:grey_zone", "bureau_score: missing"):
        assert expected in page, expected

    browser.find_element(By.XPATH, "//button[normalize-space()='Claim this case']").click()
    assert _eventually(lambda: store.get_case_by_application("APP-BROWSER-1")["claimed_by"] == "uma")
    assert _eventually(lambda: "Release it" in browser.page_source)  # the page after the claim has loaded

    decline = browser.find_element(By.XPATH, "//form[.//input[@name='decision' and @value='decline']]")
    decline.find_element(By.CSS_SELECTOR, "input[name='reason_codes'][value='R07']").click()
    decline.find_element(By.NAME, "note").send_keys("Bureau score confirmed low")
    decline.find_element(By.CSS_SELECTOR, "button[type='submit']").click()

    assert _eventually(lambda: store.get_case_by_application("APP-BROWSER-1")["status"] == "decided")
    case = store.get_case_by_application("APP-BROWSER-1")
    assert case["status"] == "decided" and case["final_decision"] == "decline"
    decisions = store.case_history(case["case_id"])["decisions"]
    assert [(d["reviewer"], d["decision"], list(d["reason_codes"])) for d in decisions] == [("uma", "decline", ["R07"])]
    assert store.verify_audit_chain()[0]
    # the case file shows the decision in its history; kept as a test artifact
    browser.get(f"{base}/cases/{case['case_id']}")
    assert _eventually(lambda: "Bureau score confirmed low" in browser.page_source)
    history = browser.page_source
    assert "decided" in history and "uma" in history and "Bureau score confirmed low" in history
    ARTIFACTS.mkdir(exist_ok=True)
    assert browser.save_screenshot(str(ARTIFACTS / "review_case_file.png"))


def test_pages_load_nothing_from_the_network(service, browser):
    base, token, _ = service
    browser.get(base + "/login")
    resources = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
    )
    assert all(r.startswith(base) for r in resources), resources
