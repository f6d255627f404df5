"""Take the README's screenshots from a running flagdash with the demo data.

    make run                      # in one terminal (demo data, http://127.0.0.1:8000)
    .venv/bin/python scripts/screenshots.py [BASE_URL] [NAME ...]

Logs in as the demo admin (password from FLAGDASH_DEMO_PASSWORD or var/demo_password) and
writes docs/*.png with Debian's Chromium (only the NAMEs given, e.g. ``short-term``, if any).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
PAGES = {
    "flag-list": "/apps/checkout/flags/",
    "flag-page": "/apps/checkout/flags/allow-bitcoin-at-checkout/",
    "rule-builder": "/apps/checkout/flags/allow-bitcoin-at-checkout/?env=beta",  # the rules only
    "audit-log": "/audit/",
    "versions": "/apps/checkout/versions/beta/5/",
    "deployments": "/apps/checkout/deployments/",
    "deployment": "/apps/checkout/deployments/",  # then the rollout in progress
    "rollbacks": "/apps/checkout/rollbacks/",
    "short-term": "/apps/checkout/short-term/",
}


def main() -> None:
    base = (sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8000").rstrip("/")
    wanted = sys.argv[2:] or list(PAGES)
    unknown = [name for name in wanted if name not in PAGES]
    if unknown:
        sys.exit(f"Unknown screenshot {', '.join(unknown)}; choose from {', '.join(PAGES)}")
    password = (
        os.environ.get("FLAGDASH_DEMO_PASSWORD")
        or (ROOT / "var" / "demo_password").read_text().strip()
    )
    out = ROOT / "docs"
    out.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = browser.new_page(viewport={"width": 1360, "height": 860})
        page.goto(f"{base}/login/")
        page.get_by_label("Username").fill("admin")
        page.get_by_label("Password").fill(password)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url("**/flags/")
        for name, path in PAGES.items():
            if name not in wanted:
                continue
            page.goto(base + path)
            if name == "audit-log":
                row = page.locator(".audit-row", has_text="Values edited").first
                row.locator("details.event summary").click()
            if name == "deployment":  # the demo's gradual rollout, moving
                page.locator(".progress-block").first.locator("xpath=..").locator(
                    "a[href*='/deployments/']"
                ).first.click()
                page.wait_for_selector("svg")
            if name == "rollbacks":
                page.locator("details summary").first.click()
            if name == "rule-builder":
                rules = page.locator("fieldset:has(> legend:text-is('Targeting rules'))")
                rules.screenshot(path=str(out / f"{name}.png"))
            else:
                page.screenshot(path=str(out / f"{name}.png"), full_page=name != "audit-log")
            print(f"wrote docs/{name}.png")
        browser.close()


if __name__ == "__main__":
    main()
