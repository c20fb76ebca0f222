#!/usr/bin/env python3
"""Debian's chromium (headless, through selenium and chromium-driver) against
a running Greenwave daemon's web view (tests/web.rs starts both).

Checks, each printed as PASS/FAIL, then "N passed, M failed":
1. the list page, opened with ?token= (the cookie carries it after), shows
   every intersection;
2. the intersection page's ring-barrier diagram receives a phase change live
   (server-sent events): the set of phases shown green changes;
3. the Purdue coordination diagram and the split monitor draw points from
   the event log;
4. the phase termination chart draws termination marks from the event log,
   in the rows of the phases that have them;
5. the map on the list page draws one marker per intersection with a
   location (as /api/intersections gives them), each linking to its page,
   lists the others as not on the map, and draws the corridor as a line;
6. the corridor's time-space diagram (/c/N) draws green bands of phase 2
   for every member from the event log's real greens, and ideal
   progression lines from the first member's green starts;
7. every resource the four pages loaded came from the daemon (no CDN);
8. the event log page shows rows, and applying a filter (codes 1, 8 of
   phase 2) leaves only those, newest first.
Writes a screenshot of the intersection page to --screenshot, and of the
map, the time-space diagram and the event log page next to it (-map.png,
-corridor.png, -events.png).
"""

import argparse
import pathlib
import sys
import time

from selenium.common.exceptions import StaleElementReferenceException
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By


def until(what, check, within_s):
    """check() until it returns something true, within within_s seconds.

    The pages re-draw as answers and live states arrive, so an element
    found a moment ago can be gone: that is "not yet", not a failure."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            value = check()
        except StaleElementReferenceException:
            value = None
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {within_s} s waiting for {what}")


def green_phases(driver):
    return frozenset(
        p.get_attribute("id") for p in driver.find_elements(By.CSS_SELECTOR, ".phase")
        if p.get_attribute("data-vehicle") == "green"
    )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True, help="the web view, e.g. http://127.0.0.1:9464")
    ap.add_argument("--token", required=True, help="a viewer token")
    ap.add_argument("--ids", required=True, help="intersection ids the list must show, comma-separated")
    ap.add_argument("--intersection", required=True)
    ap.add_argument("--chromedriver", default="/usr/bin/chromedriver")
    ap.add_argument("--screenshot", required=True)
    ap.add_argument("--corridor", required=True, help="a corridor's number or name")
    ap.add_argument("--corridor-members", required=True, help="its member ids, comma-separated")
    args = ap.parse_args()

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1900"):
        options.add_argument(flag)
    def shot(name):
        path = pathlib.Path(args.screenshot)
        return path.with_name(f"{path.stem}-{name}{path.suffix}")

    driver = webdriver.Chrome(service=Service(args.chromedriver), options=options)
    results = []

    def check(name, fn):
        try:
            detail = fn()
            results.append(True)
            print(f"PASS {name}: {detail}")
        except Exception as e:  # every failure is reported, then the next check runs
            results.append(False)
            print(f"FAIL {name}: {e}")

    try:
        def listed():
            driver.get(f"{args.url}/?token={args.token}")
            want = sorted(args.ids.split(","))
            rows = until("the list of intersections", lambda: sorted(
                r.get_attribute("data-id") for r in driver.find_elements(By.CSS_SELECTOR, "#intersections tbody tr")
            ) == want and want, 20)
            units = [u.text for u in driver.find_elements(By.CSS_SELECTOR, "#intersections td.unit")]
            return f"rows {rows}, units {units}"

        def live_phase_change():
            driver.get(f"{args.url}/i/{args.intersection}")
            until("the live feed", lambda: driver.find_element(By.ID, "live").text == "(live)", 20)
            first = until("a green phase", lambda: green_phases(driver), 20)
            changed = until("another phase green", lambda: (g := green_phases(driver)) != first and g, 30)
            return f"green {sorted(first)} then {sorted(changed)}"

        def plots():
            def drawn():
                driver.find_element(By.ID, "reload").click()
                time.sleep(1.0)
                pcd = driver.find_element(By.ID, "pcd")
                splits = driver.find_element(By.ID, "splits")
                arrivals = len(pcd.find_elements(By.CSS_SELECTOR, "circle.arrival"))
                split_points = len(splits.find_elements(By.CSS_SELECTOR, "circle.split"))
                green_line = len(pcd.find_elements(By.CSS_SELECTOR, "polyline.green-line"))
                return arrivals > 0 and split_points > 0 and green_line > 0 and (arrivals, split_points)
            arrivals, split_points = until("points in both plots", drawn, 90)
            return f"{arrivals} arrivals on the coordination diagram, {split_points} splits"

        def terminations():
            def drawn():
                driver.find_element(By.ID, "reload").click()
                time.sleep(1.0)
                svg = driver.find_element(By.ID, "terminations")
                marks = len(svg.find_elements(By.CSS_SELECTOR, "line.term"))
                walks = len(svg.find_elements(By.CSS_SELECTOR, "circle.walk"))
                said = int(svg.get_attribute("data-terminations") or 0)
                assert said == marks, f"data-terminations {said}, {marks} marks drawn"
                kinds = {k: len(svg.find_elements(By.CSS_SELECTOR, f"line.term.{k}"))
                         for k in ("gap-out", "max-out", "force-off", "other")}
                return marks > 0 and (marks, walks, kinds)
            marks, walks, kinds = until("termination marks", drawn, 60)
            labels = [t.text for t in driver.find_elements(By.CSS_SELECTOR, "#terminations text") if t.text.startswith("Φ")]
            assert len(labels) >= 2, f"a row per phase: {labels}"
            return f"{marks} terminations {kinds}, {walks} walks, rows {labels}"

        def map_markers():
            driver.get(f"{args.url}/")
            rows = driver.execute_script(
                "return fetch('/api/intersections', {credentials: 'same-origin'}).then(r => r.json())")
            located = sorted(r["id"] for r in rows if r["location"] is not None)
            unlocated = [r["id"] for r in rows if r["location"] is None]
            assert located, "no intersection has a location"

            def drawn():
                markers = driver.find_elements(By.CSS_SELECTOR, "#map circle.marker")
                return markers if sorted(m.get_attribute("data-id") for m in markers) == located else None
            markers = until("one marker per located intersection", drawn, 20)
            for m in markers:
                href = m.find_element(By.XPATH, "..").get_dom_attribute("href")
                assert href.endswith(f"/i/{m.get_attribute('data-id')}"), f"marker links to {href}"
            text = driver.find_element(By.ID, "unlocated").text
            assert all(u in text for u in unlocated), f"unlocated {unlocated} not listed: {text!r}"
            lines = until("the corridor's line", lambda: driver.find_elements(By.CSS_SELECTOR, "#map polyline.corridor-line"), 10)
            links = [a.get_attribute("href") for a in driver.find_elements(By.CSS_SELECTOR, "#corridors a")]
            assert links and links[0].endswith(f"/c/{args.corridor}"), f"corridor links {links}"
            states = [m.get_attribute("data-state") for m in markers]
            driver.save_screenshot(str(shot("map")))
            return f"{len(markers)} markers {located} ({states}), not on the map {unlocated}, {len(lines)} corridor line(s)"

        def time_space():
            driver.get(f"{args.url}/c/{args.corridor}")
            members = args.corridor_members.split(",")

            def drawn():
                driver.find_element(By.ID, "reload").click()
                time.sleep(1.0)
                tsd = driver.find_element(By.ID, "tsd")
                greens = {m: len(tsd.find_elements(
                    By.CSS_SELECTOR, f"rect.band.green[data-member='{m}'][data-phase='2']")) for m in members}
                lines = len(tsd.find_elements(By.CSS_SELECTOR, "line.progression.outbound"))
                # Two greens at each member: at least one begins with a
                # logged green (1) inside the window; a progression line
                # starts only at such a green.
                return all(n >= 2 for n in greens.values()) and lines > 0 and (greens, lines)
            greens, lines = until("green bands at every member and a progression line", drawn, 90)
            driver.save_screenshot(str(shot("corridor")))
            status = driver.find_element(By.ID, "status").text
            return f"phase 2 green bands {greens}, {lines} progression lines ({status})"

        def offline():
            urls = []
            # Each page in turn: the list with its map, an intersection, its
            # event log, a corridor.
            pages = ("/", f"/i/{args.intersection}", f"/i/{args.intersection}/events", f"/c/{args.corridor}")
            for page in pages:
                driver.get(f"{args.url}{page}")
                time.sleep(1.5)
                urls += driver.execute_script(
                    "return performance.getEntriesByType('resource').map(e => e.name).concat([location.href])")
            foreign = [u for u in urls if not u.startswith(args.url)]
            assert not foreign, f"loaded from elsewhere: {foreign}"
            return f"{len(urls)} resources on {len(pages)} pages, all from the daemon"

        def event_log():
            driver.get(f"{args.url}/i/{args.intersection}/events")

            # Read in one script call: the table is re-drawn when an answer
            # arrives, and an element found before may be gone after.
            def rows():
                return [tuple(r) for r in driver.execute_script(
                    "return [...document.querySelectorAll('#log tbody tr')]"
                    ".map(r => [r.dataset.code, r.dataset.param])")]
            before = until("event log rows", lambda: (r := rows()) and len({c for c, _ in r}) > 2 and r, 30)
            driver.find_element(By.ID, "codes").send_keys("1, 8")
            driver.find_element(By.ID, "param").send_keys("2")
            driver.find_element(By.ID, "apply").click()
            after = until("the filtered rows", lambda: (r := rows()) and r != before
                          and all(c in ("1", "8") and p == "2" for c, p in r) and r, 30)
            names = set(driver.execute_script(
                "return [...document.querySelectorAll('#log tbody td:nth-child(3)')].map(c => c.textContent)"))
            assert names == {"Phase Begin Green", "Phase Begin Yellow Clearance"}, names
            status = driver.find_element(By.ID, "log-status").text
            urls = driver.execute_script(
                "return performance.getEntriesByType('resource').map(e => e.name).concat([location.href])")
            foreign = [u for u in urls if not u.startswith(args.url)]
            assert not foreign, f"loaded from elsewhere: {foreign}"
            return f"{len(before)} rows of codes {sorted({c for c, _ in before}, key=int)}, filtered to {len(after)} ({status})"

        check("the list shows every intersection", listed)
        check("a phase change arrives live", live_phase_change)
        check("the plots draw points from the event log", plots)
        check("the termination chart draws marks from the event log", terminations)
        driver.save_screenshot(args.screenshot)
        print(f"screenshot: {args.screenshot}")
        check("the map draws one marker per located intersection", map_markers)
        check("the time-space diagram draws green bands from the log", time_space)
        check("nothing is loaded from elsewhere", offline)
        check("the event log page filters its rows", event_log)
        driver.save_screenshot(str(shot("events")))
        print(f"screenshots: {shot('map')}, {shot('corridor')}, {shot('events')}")
    finally:
        driver.quit()
    passed = sum(results)
    print(f"{passed} passed, {len(results) - passed} failed")
    return 0 if passed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
