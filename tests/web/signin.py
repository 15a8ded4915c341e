"""A person signs in to the web view at the identity provider, in a real
browser (Debian's chromium, headless, through chromedriver and Selenium):
authorization code with PKCE, as the page's public client, against npm's
oidc-provider, whose development login takes any name and password.

    python3 tests/web/signin.py URL LOGIN PLANT LINES_JSON

URL serves the demonstration network and signs people in at the provider;
LOGIN is the name to sign in with (the provider gives it the roles and
plants its name asks for); PLANT is the one plant that account may see, and
LINES_JSON lists that plant's lines.
Exits non-zero, naming the check, when what a person would see differs.
Run by tests/oidc.rs.
"""

import json
import sys

from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from view import browser, check, eventually


def visible(driver, css):
    element = driver.find_element(By.CSS_SELECTOR, css)
    return element if element.is_displayed() else None


def main(url, login, plant, lines):
    lines = json.loads(lines)
    driver = browser()
    try:
        driver.get(url + "/?as_of=2025-06-02")
        eventually(lambda: visible(driver, "#sign-in"), "the page offers to sign in")
        check(
            driver.execute_script("return sessionStorage.getItem('lodestone-token')") is None,
            "no token before signing in",
        )
        driver.find_element(By.CSS_SELECTOR, "#sign-in").click()

        # The provider's pages: a login, then a consent.
        field = eventually(lambda: visible(driver, "input[name=login]"), "the provider asks for a login")
        check(not driver.current_url.startswith(url), "the browser is at the provider")
        field.send_keys(login)
        driver.find_element(By.CSS_SELECTOR, "input[name=password]").send_keys("any")
        driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        eventually(
            lambda: driver.current_url.startswith(url)
            or visible(driver, "button[type=submit]"),
            "the provider asks for consent or sends the browser back",
        )
        if not driver.current_url.startswith(url):
            driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()

        # Back on the page, signed in, the address as it was.
        who = eventually(
            lambda: (lambda t: t if "Signed in as" in t else None)(driver.find_element(By.ID, "who").text),
            "the page says who signed in",
        )
        # What the console held came before (the page's calls refused
        # before signing in; the provider's pages): from here, nothing.
        driver.get_log("browser")
        check(login in who and f"plants {plant}" in who, f"the page names {login} and its plant: {who!r}")
        check("as_of=2025-06-02" in driver.current_url, f"the address is as it was: {driver.current_url}")
        check("code=" not in driver.current_url, "the code is gone from the address")
        plants = eventually(
            lambda: (lambda o: o if len(o) > 1 else None)(
                [o.get_attribute("value") for o in Select(driver.find_element(By.ID, "plant")).options]
            ),
            "the plant list is drawn",
        )
        check(plants == ["", plant], f"only the account's plant is offered: {plants}")
        rows = eventually(
            lambda: driver.find_elements(By.CSS_SELECTOR, "#lines tbody tr"),
            "the lines that stop are shown",
        )
        shown = [r.find_element(By.TAG_NAME, "button").text for r in rows]
        check(shown and all(line in lines for line in shown), f"only {plant}'s lines are shown: {shown}")
        status = driver.find_element(By.ID, "status").text
        check("PERMISSION" not in status and "refused" not in status.lower(), f"no refusal: {status!r}")

        # The token lives in this tab only: not in localStorage, not a cookie
        # of the page.
        check(
            driver.execute_script("return sessionStorage.getItem('lodestone-token')"),
            "the token is kept in the tab",
        )
        check(driver.execute_script("return localStorage.length") == 0, "nothing in localStorage")
        check(driver.execute_script("return document.cookie") == "", "no cookie of the page")

        errors = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        check(not errors, f"no errors in the browser's console while signed in: {errors}")

        # Signing out forgets it.
        driver.find_element(By.ID, "sign-out").click()
        eventually(lambda: visible(driver, "#sign-in"), "the page offers to sign in again")
        check(
            driver.execute_script("return sessionStorage.getItem('lodestone-token')") is None,
            "the token is gone after signing out",
        )
    finally:
        driver.quit()
    print("all sign-in checks passed")


if __name__ == "__main__":
    main(*sys.argv[1:5])
