"""The dashboard in a real browser: headless Chromium through chromedriver against a real fleet
service (in-process uvicorn), a real mosquitto and simulated cars on the real protocol.

Sign in through the form, see a car's reason bar appear when it goes to STANDBY, watch a batch
submitted through the API reach 100 %, open a car's page, and see a wrong token refused.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from agent.fleet.broker import Broker
from agent.fleet.models import TrustStore
from hil.dashboard_shot import chromium_paths, start_browser
from hil.fleetcars import VEHICLE, SimCar
from hil.fleetservice import FleetService
from tests.fleetside.conftest import MODEL

pytestmark = pytest.mark.skipif(
    chromium_paths() is None,
    reason="needs Debian's chromium and chromium-driver (.ci/sysdeps.sh installs them)")


WAIT_S = 20.0


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    drv = start_browser()
    yield drv
    drv.quit()


@pytest.fixture
def service(tmp_path: Path, mosquitto: Broker, fleet_key: tuple[Path, TrustStore]) -> Iterator[FleetService]:
    svc = FleetService.start(str(tmp_path / "fleet.sqlite"), fleet_key[0], mosquitto.host,
                             mosquitto.port, job_timeout_s=5.0)
    yield svc
    svc.stop()


def sign_in(drv: Any, base: str, token: str) -> None:
    drv.get(base + "/")
    drv.execute_script("localStorage.clear()")
    drv.get(base + "/")
    field = WebDriverWait(drv, WAIT_S).until(lambda d: d.find_element(By.ID, "token"))
    field.send_keys(token)
    drv.find_element(By.CSS_SELECTOR, "#login button[type=submit]").click()


def text_of(drv: Any, css: str) -> str | None:
    # Read in one script call: the page re-renders on every event, so an element found by one
    # WebDriver call can be gone (stale) by the next.
    return drv.execute_script(  # type: ignore[no-any-return]
        "const e = document.querySelector(arguments[0]); return e ? e.innerText.trim() : null", css)


def until(drv: Any, what: Callable[[Any], object], message: str) -> Any:
    # an element found by one call may be re-rendered (stale) by the next: look again
    return WebDriverWait(drv, WAIT_S, ignored_exceptions=(StaleElementReferenceException,)).until(what, message)


def test_sign_in_watch_a_car_leave_run_and_a_batch_reach_100_percent(
        browser: Any, service: FleetService, sim_cars: Callable[..., list[SimCar]]) -> None:
    cars = sim_cars(2)
    base = service.api.base
    sign_in(browser, base, service.api.token)
    until(browser, lambda d: text_of(d, '#modes .bar[data-key="RUN"] .n') == "2",
          "both cars in RUN on the dashboard")
    assert browser.find_element(By.ID, "dash").is_displayed()
    assert not browser.find_element(By.ID, "login").is_displayed()
    assert browser.find_element(By.ID, "no-reasons").is_displayed()  # every car in RUN
    assert browser.execute_script("return localStorage.getItem('fleetnode.token')") == service.api.token
    link = until(browser, lambda d: (t := text_of(d, "#link")) and "connected" in t and t, "link health")
    assert link.startswith("connected")

    cars[1].link.apply_decision({"mode": "STANDBY", "power_budget_w": 0.0,
                                 "reasons": [{"code": "soc_floor"}]}, VEHICLE)
    until(browser, lambda d: text_of(d, '#reasons .bar[data-key="soc_floor"] .n') == "1",
          "the STANDBY car's reason bar")
    assert text_of(browser, '#modes .bar[data-key="RUN"] .n') == "1"
    assert text_of(browser, '#modes .bar[data-key="STANDBY"] .n') == "1"

    status, body = service.api.submit(MODEL.read_bytes(),
                                      {f"x{i}": np.full((1, 16), i, np.int8) for i in range(6)},
                                      redundancy="1")
    assert status == 201, body
    bar = f'#batches .batch[data-id="{body["id"]}"]'
    until(browser, lambda d: text_of(d, bar) is not None, "the new batch's bar")
    until(browser, lambda d: text_of(d, f"{bar} .pct") == "100 %", "the batch's bar at 100 %")
    width = browser.execute_script(
        f"return document.querySelector('{bar} .fill').style.width")
    assert width == "100%"
    until(browser, lambda d: text_of(d, "#rate") not in (None, "–", "0.00"), "a task rate")

    # The car page: the mode timeline shows RUN then STANDBY, the history its validated results.
    # clicked inside the page: the table is rebuilt on every event, so a found row can go stale
    browser.execute_script("document.querySelector(arguments[0]).click()",
                           f'#car-table tr[data-car="{cars[0].car_id}"] a')
    until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#history tbody tr"),
          "car00's validation history")
    assert text_of(browser, "#car-id") == cars[0].car_id
    browser.get(f"{base}/cars/{cars[1].car_id}")  # the token is remembered: no sign-in
    until(browser, lambda d: [s.get_attribute("data-mode") for s in
                              d.find_elements(By.CSS_SELECTOR, "#timeline .seg[data-mode]")]
          == ["RUN", "STANDBY"], "car01's timeline RUN then STANDBY")
    page = browser.page_source
    assert "soc_percent" not in page and "latitude" not in page


def test_a_wrong_token_is_refused_with_an_error_and_nothing_is_shown(
        browser: Any, service: FleetService) -> None:
    sign_in(browser, service.api.base, "fn_wrong-token")
    err = until(browser, lambda d: (e := d.find_element(By.ID, "login-error")).is_displayed() and e,
                "the sign-in error")
    assert "refused" in err.text
    assert not browser.find_element(By.ID, "dash").is_displayed()
    assert browser.execute_script("return localStorage.getItem('fleetnode.token')") is None
