"""A picture of the fleet dashboard with a live fleet: `make screenshot` -> docs/img/dashboard.png.

Starts a private mosquitto on a loopback port, the fleet service in this process, a handful of
simulated cars (two leave RUN with a reason, one goes offline), submits two batches through the
API, waits until the first is done, and has headless Chromium take the page. Needs Debian's
chromium and chromium-driver (.ci/sysdeps.sh). Also the browser the dashboard tests drive.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "agent" / "inference" / "models" / "thin_path.tflite"


def chromium_paths() -> tuple[str, str] | None:
    """(browser, driver) when Debian's chromium and chromium-driver are installed."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


def start_browser(width: int = 1280, height: int = 1400) -> Any:
    """Headless Chromium under chromedriver (no sandbox: the tests and CI run as root)."""
    from selenium import webdriver

    paths = chromium_paths()
    if paths is None:
        raise RuntimeError("needs Debian's chromium and chromium-driver (bash .ci/sysdeps.sh)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = paths[0]
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--window-size={width},{height}", "--no-first-run", "--disable-extensions",
                "--hide-scrollbars"):
        opts.add_argument(arg)
    return webdriver.Chrome(options=opts, service=webdriver.ChromeService(executable_path=paths[1]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "img" / "dashboard.png")
    ap.add_argument("--cars", type=int, default=6)
    args = ap.parse_args(argv)

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from agent.fleet.broker import start_broker
    from hil.fleetcars import VEHICLE, start_cars
    from hil.fleetservice import FleetService, make_key

    with tempfile.TemporaryDirectory(prefix="fleet-shot-") as tmp:
        work = Path(tmp)
        broker = start_broker(work / "mosquitto")
        key, trust = make_key(work / "keys")
        svc = FleetService.start(str(work / "fleet.sqlite"), key, broker.host, broker.port)
        cars = start_cars(args.cars, broker.host, broker.port, work / "cars", trust)
        drv = None
        try:
            inputs = {f"x{i}": np.full((1, 16), i % 100, np.int8) for i in range(40)}
            status, first = svc.api.submit(MODEL.read_bytes(), inputs, redundancy="2")
            if status != 201:
                raise RuntimeError(f"batch refused: {first}")
            deadline = time.monotonic() + 60
            while svc.store.batch(first["id"])["state"] == "running":
                if time.monotonic() > deadline:
                    raise RuntimeError("the first batch did not finish in 60 s")
                time.sleep(0.2)
            cars[-1].link.apply_decision({"mode": "STANDBY", "power_budget_w": 0.0,
                                          "reasons": [{"code": "soc_floor"}]}, VEHICLE)
            cars[-2].link.apply_decision({"mode": "STANDBY", "power_budget_w": 0.0,
                                          "reasons": [{"code": "driver_present"}]}, VEHICLE)
            cars[-3].close()  # its last will says offline
            svc.api.submit(MODEL.read_bytes(), {f"y{i}": np.zeros((1, 16), np.int8)
                                                for i in range(400)}, redundancy="adaptive")
            drv = start_browser(height=1150)
            drv.get(svc.api.base + "/")
            WebDriverWait(drv, 20).until(lambda d: d.find_element(By.ID, "token")).send_keys(
                svc.api.token)
            drv.find_element(By.CSS_SELECTOR, "#login button[type=submit]").click()
            WebDriverWait(drv, 30).until(
                lambda d: d.find_elements(By.CSS_SELECTOR, '#modes .bar[data-key="OFFLINE"]')
                and d.find_elements(By.CSS_SELECTOR, "#car-table tbody tr"))
            WebDriverWait(drv, 10).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#batches .batch"))
            args.out.parent.mkdir(parents=True, exist_ok=True)
            drv.save_screenshot(str(args.out))
        finally:
            if drv is not None:
                drv.quit()
            for c in cars[:-3] + cars[-2:]:
                c.close()
            svc.stop()
            broker.kill()
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
