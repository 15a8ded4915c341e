"""The web view in a real browser: Debian's chromium, headless, driven
through chromedriver with Selenium, against servers running the
demonstration network.

    python3 tests/web/view.py EXPECTED_JSON OPEN_URL TOKEN_URL READER_TOKEN [SCREENSHOT]

EXPECTED_JSON lists the README's lines that stop as [line, stop date], in
order. OPEN_URL serves without authentication; TOKEN_URL asks for a token,
READER_TOKEN being a reader's. Exits non-zero, naming the check, when what
a person would see differs. Run by tests/web_view.rs.
"""

import json
import sys
import time

import requests
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select

WAIT = 60  # seconds: a slow, shared machine


def check(condition, what):
    if not condition:
        print(f"FAILED: {what}", file=sys.stderr)
        sys.exit(1)
    print(f"ok: {what}")


def eventually(probe, what):
    """Waits until probe() is truthy; its value."""
    deadline = time.monotonic() + WAIT
    last = None
    while time.monotonic() < deadline:
        try:
            last = probe()
            if last:
                return last
        except Exception as error:  # the page is still drawing
            last = error
        time.sleep(0.1)
    check(False, f"{what} (last seen: {last!r})")


def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-dev-shm-usage",
        "--window-size=1366,900",
    ]:
        options.add_argument(flag)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def shown_lines(driver):
    """The lines the table shows, in order, as [line, stop date]."""
    rows = driver.find_elements(By.CSS_SELECTOR, "#lines tbody tr")
    return [
        [row.find_element(By.TAG_NAME, "button").text,
         row.find_element(By.CSS_SELECTOR, ".stop-date").text]
        for row in rows
    ]


def open_streams(url):
    """The server's open streams, from its metrics."""
    for line in requests.get(f"{url}/metrics", timeout=WAIT).text.splitlines():
        if line.startswith("lodestone_streams_open"):
            return float(line.split()[-1])
    return None


def main(expected, open_url, token_url, reader_token, screenshot):
    driver = browser()
    try:
        driver.get(open_url + "/?as_of=2025-06-02")
        check(driver.title.startswith("Lodestone"), f"the page loads: {driver.title}")

        # Every control has a label a screen reader announces.
        for control in driver.find_elements(By.CSS_SELECTOR, "input, select"):
            labelled = driver.execute_script(
                "return arguments[0].labels.length > 0", control
            )
            check(labelled, f"the control {control.get_attribute('name')} has a label")

        # The README's lines that stop, on its dates, in its order.
        shown = eventually(
            lambda: shown_lines(driver) if len(shown_lines(driver)) == len(expected) else None,
            f"{len(expected)} lines that stop",
        )
        check(shown == expected, f"the lines and dates of the README, in order: {shown}")

        # Each row says, in names, what the line runs out of and why.
        runs_out = eventually(
            lambda: (t := driver.find_element(By.CSS_SELECTOR, "#lines tbody tr .runs-out").text)
            and "Hybrid-motor magnet set" in t and t,
            "the first row names the part it runs out of",
        )
        check("(MAG-HEV)" in runs_out and "Baotou Magnet Works (BTM) · Dysprosium" in runs_out
              and "Ganzhou Rare Earth Alloys (GZR) · Dysprosium" in runs_out,
              f"with the suppliers and the material by name: {runs_out!r}")
        # How likely, with the P10-P90 dates, from a sample count the page says.
        chance = eventually(
            lambda: (t := driver.find_element(By.CSS_SELECTOR, "#lines tbody tr .chance").text)
            != "–" and t,
            "the first row says how likely it is to stop",
        )
        check(chance.startswith("100% (2025-06-"), f"the hybrid line stops for sure, in June: {chance!r}")
        check("sampled futures" in driver.find_element(By.ID, "forecast-note").text
              and "200" in driver.find_element(By.ID, "forecast-note").text,
              "the page says how many futures were sampled")
        # A legend and a date axis on the timeline.
        check("red" in driver.find_element(By.ID, "legend").text
              and "amber" in driver.find_element(By.ID, "legend").text, "the timeline has a legend")
        check(driver.find_element(By.ID, "axis-from").text == "2025-06-02"
              and driver.find_element(By.ID, "axis-to").text == "2025-08-31",
              "the timeline's axis runs from the day asked to the horizon's end")
        # ISO dates in the controls.
        check(driver.find_element(By.ID, "as-of").get_attribute("value") == "2025-06-02"
              and driver.find_element(By.ID, "as-of").get_attribute("placeholder") == "YYYY-MM-DD",
              "the date is written YYYY-MM-DD")
        # The feed opens with the log's latest licence changes.
        feed = driver.find_elements(By.CSS_SELECTOR, "#feed li")
        feed = eventually(lambda: driver.find_elements(By.CSS_SELECTOR, "#feed li"),
                          "the feed opens with recent licence changes")
        check(len(feed) == 10 and not driver.find_element(By.ID, "feed-empty").is_displayed(),
              f"the latest ten, not a blank feed: {len(feed)}")

        # A line's root cause, by keyboard.
        first = driver.find_element(By.CSS_SELECTOR, "#lines tbody tr button")
        first.send_keys(Keys.ENTER)
        why = eventually(lambda: driver.find_element(By.ID, "why").text, "the reason shows")
        check(
            f"Why {expected[0][0]} stops on {expected[0][1]}" in why
            and "HYBRID-MOTOR ← MAG-HEV" in why
            and "LIC-GZR-DY-0528" in why,
            f"the root cause path, pools and licences: {why!r}",
        )
        check(
            driver.find_element(By.CSS_SELECTOR, "#lines tbody tr button")
            .get_attribute("aria-expanded") == "true",
            "the chosen line says it is expanded",
        )

        # How many of which part to expedite, by when: the server's shortfall.
        answer = requests.post(
            open_url + "/lodestone.v1.RiskService/ListAtRiskLines",
            json={"asOf": "2025-06-02"}, timeout=WAIT,
        ).json()
        told = next(l for l in answer["lines"] if l["lineId"] == expected[0][0])
        expedite = (f"{round(told['shortfallUnits']):,} × {told['rootCausePath'][-1]}"
                    f" by {told['stopDate']}")
        check(told["shortfallUnits"] > 0 and expedite in why,
              f"the reason says what to expedite ({expedite}): {why!r}")
        # The shipments on their way for the line's parts.
        inbound = eventually(
            lambda: [e.get_attribute("data-shipment")
                     for e in driver.find_elements(By.CSS_SELECTOR, "#inbound li")],
            "the line's inbound shipments are listed",
        )
        check(inbound == ["SH-BTM-4500119047-20"],
              f"the hybrid magnets on the water, and nothing else: {inbound}")
        eventually(
            lambda: driver.find_elements(By.CSS_SELECTOR, "#impacts tbody tr")
            and driver.find_elements(By.CSS_SELECTOR, "#stakes tbody tr"),
            "the supplier and licence tables fill",
        )
        impact = driver.find_element(By.CSS_SELECTOR, "#impacts tbody tr").text
        check("Dresden Audio Systems (DAS)" in impact and "yes" in impact and "1.00" in impact,
              f"the costliest supplier by name, critical, index 1.00: {impact!r}")
        licences = eventually(lambda: (t := driver.find_element(By.ID, "licences").text)
                              and "(rejected)" in t and t, "the licences' statuses show")
        check("LIC-GZR-DY-0528 (pending)" in licences, f"each licence's status: {licences!r}")

        # At 1,000 px nothing breaks inside an id or a date.
        driver.set_window_size(1000, 900)
        broken = driver.execute_script("""
            return [...document.querySelectorAll(
                '#lines td:not(.runs-out), #impacts td, #stakes td')].filter((td) => {
              // A text that wraps has its pieces on more than one line.
              const walk = document.createTreeWalker(td, NodeFilter.SHOW_TEXT);
              for (let text = walk.nextNode(); text; text = walk.nextNode()) {
                const range = document.createRange();
                range.selectNodeContents(text);
                const tops = new Set([...range.getClientRects()].map((r) => Math.round(r.top)));
                if (tops.size > 1) return true;
              }
              return false;
            }).map((td) => td.textContent);
        """)
        check(not broken, f"no id, date or figure breaks across lines at 1,000 px: {broken}")
        driver.set_window_size(1366, 900)
        if screenshot:
            driver.save_screenshot(screenshot)
            print(f"screenshot: {screenshot}")

        # Another scenario, another answer.
        driver.find_element(
            By.CSS_SELECTOR, "input[value=PENDING_ASSUMPTION_APPROVED_AS_EXPECTED]"
        ).click()
        changed = eventually(
            lambda: (s := shown_lines(driver)) and s != shown and s,
            "granting pending licences changes the answer",
        )
        print(f"granted when expected: {changed}")
        check("pending=PENDING_ASSUMPTION_APPROVED_AS_EXPECTED" in driver.current_url,
              "the address holds the question")
        driver.find_element(By.CSS_SELECTOR, "input[value=PENDING_ASSUMPTION_DENIED]").click()
        eventually(lambda: shown_lines(driver) == expected, "back to the README's answer")

        # One plant's lines.
        Select(driver.find_element(By.ID, "plant")).select_by_value("VIGO")
        vigo = [line for line in expected if line[0].startswith("VIG-")]
        eventually(lambda: shown_lines(driver) == vigo, f"the Vigo plant's lines: {vigo}")
        check("plant=VIGO" in driver.current_url, "the address holds the plant")
        Select(driver.find_element(By.ID, "plant")).select_by_value("")
        eventually(lambda: shown_lines(driver) == expected, "every plant's lines again")

        # Idling a line leaves its parts to the others; the address keeps it.
        def stop_of(line_id):
            return dict(map(tuple, shown_lines(driver))).get(line_id)

        Select(driver.find_element(By.ID, "idle")).select_by_value("VIG-PHEV1")
        eventually(
            lambda: stop_of("VIG-PHEV1") == "idled" and stop_of("GYR-HEV1") > expected[0][1],
            "the van is idled and the Gyor hybrid stops later",
        )
        check("idle=VIG-PHEV1" in driver.current_url, "the address holds the idled line")
        Select(driver.find_element(By.ID, "idle")).select_by_value("")
        eventually(lambda: shown_lines(driver) == expected, "no line idled: the README's answer")

        # An airfreight arrival, typed in, kept in the address across a reload.
        driver.find_element(By.ID, "air-component").send_keys("MAG-HEV")
        driver.find_element(By.ID, "air-units").send_keys("4500")
        driver.execute_script(
            "const on = arguments[0]; on.value = '2025-06-24';"
            " on.dispatchEvent(new Event('change', {bubbles: true}))",
            driver.find_element(By.ID, "air-on"),
        )
        flown = eventually(
            lambda: (s := stop_of("GYR-HEV1")) and s > expected[0][1] and s,
            "the airfreight keeps the Gyor hybrid running longer",
        )
        address = driver.current_url
        check("air_component=MAG-HEV" in address and "air_units=4500" in address
              and "air_on=2025-06-24" in address, f"the address holds the arrival: {address}")
        driver.get(address)
        eventually(lambda: stop_of("GYR-HEV1") == flown, "the same answer after a reload")
        check(driver.find_element(By.ID, "air-units").get_attribute("value") == "4500",
              "the switches are read back from the address")
        driver.get(open_url + "/?as_of=2025-06-02")
        eventually(lambda: shown_lines(driver) == expected, "without it, the README's answer")

        # A decision recorded through the API reaches the feed and the lines
        # without a reload.
        driver.execute_script("window.notReloaded = true")
        response = requests.post(
            open_url + "/lodestone.v1.RecordService/UpdateLicenseStatus",
            json={"id": "LIC-JXM-DY-0521", "status": "LICENSE_STATUS_APPROVED",
                  "decidedOn": "2025-06-03"},
            timeout=WAIT,
        )
        check(response.status_code == 200, f"the decision is recorded: {response.text}")
        entry = eventually(
            lambda: (t := driver.find_element(
                By.CSS_SELECTOR, "#feed li[data-licence=LIC-JXM-DY-0521]"
            ).text) and "approved" in t and t,
            "the decision appears in the feed",
        )
        check("approved" in entry and "(was pending)" in entry, f"the feed says what changed: {entry!r}")
        eventually(
            lambda: "VIG-LCV1" not in [line for line, _ in shown_lines(driver)],
            "the panel-van line leaves the lines that stop",
        )
        check(driver.execute_script("return window.notReloaded === true"), "without a reload")

        # Nothing failed to load, nothing threw.
        errors = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        check(not errors, f"the browser reported no errors: {errors}")

        # What the address asks and the page cannot show is said.
        driver.get(open_url + "/?as_of=2025-13-40&plant=EMDN&horizon=lots")
        warning = eventually(lambda: (w := driver.find_element(By.ID, "warning")).is_displayed()
                             and "EMDN" in w.text and w.text, "a bad address is warned of")
        check('"2025-13-40"' in warning and '"lots"' in warning,
              f"each bad value named: {warning!r}")

        # Reloading ends the streams of the page left: a browser keeps six
        # connections to a server, and streams that linger would hold them.
        for _ in range(4):
            driver.get(open_url + "/?as_of=2025-06-02")
            eventually(lambda: len(shown_lines(driver)) > 0, "the page after a reload")
        # Ended at once, not when the server next finds the connection gone
        # (a lingering stream held it for about a minute): 15 s is plenty.
        deadline = time.monotonic() + 15
        while (streams := open_streams(open_url)) > 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        check(streams <= 2, f"the streams of the pages left have ended: {streams} open")

        # Plain / on the demonstration network opens on the demo's date.
        driver.get(open_url + "/")
        opened = eventually(lambda: driver.find_element(By.ID, "as-of").get_attribute("value"),
                            "the date control fills")
        check(opened == "2025-06-02", f"the demo's page opens on the demo's date: {opened}")
        decided = [line for line in expected if line[0] != "VIG-LCV1"]
        eventually(lambda: shown_lines(driver) == decided,
                   "and tells the README's story, the panel van's licence since approved")

        # With authentication on, a reader's token opens the view.
        driver.get(token_url + "/?as_of=2025-06-02")
        status = eventually(lambda: driver.find_element(By.ID, "status").text, "a refusal shows")
        check("token" in status, f"the page asks for a token: {status!r}")
        token = driver.find_element(By.ID, "token")
        token.send_keys(reader_token)
        token.send_keys(Keys.TAB)
        shown = eventually(
            lambda: shown_lines(driver) if len(shown_lines(driver)) == len(expected) else None,
            "the lines with a reader's token",
        )
        check(shown == expected, f"the same answer with a token: {shown}")
    finally:
        driver.quit()
    print("all browser checks passed")


if __name__ == "__main__":
    main(
        json.loads(sys.argv[1]),
        sys.argv[2],
        sys.argv[3],
        sys.argv[4],
        sys.argv[5] if len(sys.argv) > 5 else None,
    )
