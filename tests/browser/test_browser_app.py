"""The app in a real browser: Playwright drives Debian's Chromium against ``python app.py --demo``.

Run alone with ``python -m pytest tests/browser -q``; set ``AB_SCREENSHOT_DIR`` to keep a
screenshot of every tab. The tests share one app process and run in file order (the blind test
uses the clips the experimenter step generates).
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

pytestmark = [pytest.mark.browser, pytest.mark.slow]

playwright_api = pytest.importorskip("playwright.sync_api")

from eval.serving.ratings import RatingsStore  # noqa: E402
from eval.serving.ratings_schema import COLUMNS  # noqa: E402
from tests.browser_page import (  # noqa: E402
    NO_DEADLINE,
    choose,
    expect_error,
    play,
    player_state,
    press,
    screenshot,
    visible_error_badges,
    wait_for_work,
    wait_text,
)

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PASSWORD = "browser-admin"
# Plan-only configurations: these labels appear nowhere in the page unless the plan leaks.
PLAN = {
    "name": "browser plan",
    "texts": ["en_01", "en_02"],
    "prompts": ["en_flite_slt"],
    "configs": [
        {"dtype": "float32", "flow_steps": 10},
        {"dtype": "float32", "flow_steps": 2},
        {"dtype": "float32", "flow_steps": 7},
    ],
    "baseline": "float32-n10",
    "trials_per_listener": 3,
    "seed": 0,
}
SECRET_LABELS = ("float32-n2", "float32-n7")

if not CHROMIUM.exists():
    pytest.skip("Debian's chromium is not installed at /usr/bin/chromium", allow_module_level=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def seed_ratings(path: Path) -> None:
    """Simulated earlier judgements, so the results tab has something to summarise."""
    store = RatingsStore(path)
    for k, (listener, text) in enumerate(
        [(li, t) for li in ("sim1", "sim2", "sim3") for t in ("en_01", "en_02")]
    ):
        store.append(
            {
                "listener_id": listener,
                "session_id": "sim",
                "trial_id": f"sim-{k}",
                "mode": "blind",
                "text_id": text,
                "text": "simulated",
                "prompt_id": "en_flite_slt",
                "a_config": "float32-n10",
                "a_flow_steps": 10,
                "a_dtype": "float32",
                "a_backend": "torch",
                "a_seed": 0,
                "a_clip_id": "x",
                "b_config": "float32-n3",
                "b_flow_steps": 3,
                "b_dtype": "float32",
                "b_backend": "torch",
                "a_llm_backend": "eager",
                "b_llm_backend": "eager",
                "b_seed": 0,
                "b_clip_id": "y",
                "shown_first": "AB"[k % 2],
                "score_a": 4 + k % 2,
                "score_b": 2 + k % 3,
                "preference": "A",
                "model_id": "sim",
                "model_hash": "sim",
                "app_version": "sim",
                "a_plays": 1,
                "b_plays": 1,
                "trial_kind": "test",
            }
        )


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = tmp_path_factory.mktemp("browser-app")
    (data / "active_plan.json").write_text(json.dumps(PLAN))
    seed_ratings(data / "ratings.csv")
    port = free_port()
    env = os.environ | {
        "GRADIO_ANALYTICS_ENABLED": "False",
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }
    log = open(data / "app.log", "w")  # noqa: SIM115 - closed at teardown
    cmd = [
        sys.executable,
        str(ROOT / "app.py"),
        "--demo",
        "--device",
        "cpu",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--data_dir",
        str(data),
        "--admin-password",
        PASSWORD,
    ]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    while True:  # until the app answers, or its process has ended
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError:
            if proc.poll() is not None:
                pytest.fail(f"app did not start: {(data / 'app.log').read_text()[-3000:]}")
            time.sleep(0.5)
    yield {"url": url, "data": data, "csv": data / "ratings.csv"}
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


@pytest.fixture(scope="module")
def browser(server):
    with playwright_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def open_app(browser, server, listener: str | None = None):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(server["url"])
    page.wait_for_selector("#pg-generate", timeout=NO_DEADLINE)
    if listener:
        page.fill("#listener-id textarea", listener)
        page.click("#listener-set")
        page.wait_for_function("document.querySelector('#listener-set').innerText.includes('Listening as')")
    return page


def csv_rows(server) -> list[dict[str, str]]:
    with open(server["csv"], newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        assert next(reader) == list(COLUMNS)
        return [dict(zip(COLUMNS, r, strict=True)) for r in reader]


def set_float32(page) -> None:
    radios = page.locator("input[type=radio][value=float32]")
    radios.nth(0).check()
    radios.nth(1).check()


def test_playground_generate_play_rate(browser, server) -> None:
    page = open_app(browser, server, "browser-pg")
    assert "random weights" in page.inner_text("body")
    page.fill("#pg-text textarea", "Hello, world.")
    set_float32(page)
    page.click("#pg-generate")
    assert page.locator("#pg-generate").is_disabled()  # no double submit while running
    wait_for_work(page, "#pg-status", "New pair")
    playwright_api.expect(page.locator("#pg-generate")).to_be_enabled()
    assert "RTF" in page.inner_text("#pg-info-a") and "ran: float32" in page.inner_text("#pg-info-b")
    assert "→ -23.0 LUFS" in page.inner_text("#pg-info-a")  # loudness-matched by default
    wait_for_work(page, "#pg-screen-b", "Predicted MOS")  # the automatic screen follows the clips
    assert "Predicted MOS" in page.inner_text("#pg-screen-a") and "WER" in page.inner_text("#pg-screen-a")
    screenshot(page, "playground")
    choose(page, "pg-score-a", "4 · Good")
    choose(page, "pg-score-b", "2 · Poor")
    choose(page, "pg-preference", "A")
    page.click("#pg-rate")
    expect_error(page, "listen to both clips")
    play(page, "pg-audio-a")
    page.click("#pg-rate")
    expect_error(page, "clip 2")
    play(page, "pg-audio-b")
    page.click("#pg-rate")
    wait_text(page, "#pg-status", "Saved")
    trial_id = re.search(r"pg-[0-9a-f]{16}", page.inner_text("#pg-status")).group(0)
    (row,) = [r for r in csv_rows(server) if r["trial_id"] == trial_id]
    assert (row["listener_id"], row["mode"], row["text"], row["text_id"]) == (
        "browser-pg",
        "playground",
        "Hello, world.",
        "en_01",
    )
    assert (row["a_config"], row["b_config"], row["score_a"], row["score_b"]) == (
        "float32-n10",
        "float32-n5",
        "4",
        "2",
    )
    assert (row["preference"], row["shown_first"], row["prompt_id"]) == ("A", "A", "en_us_espeak_m")
    page.close()


def test_bad_input_shows_errors_and_app_stays_usable(browser, server, tmp_path: Path) -> None:
    short, junk = tmp_path / "short.wav", tmp_path / "junk.wav"
    sf.write(short, (0.3 * np.sin(np.arange(4_800) / 5.0)).astype(np.float32), 24_000)
    junk.write_text("definitely not audio")
    page = open_app(browser, server, "browser-bad")
    set_float32(page)
    page.fill("#pg-text textarea", "")
    page.click("#pg-generate")
    expect_error(page, "text is empty")
    page.fill("#pg-text textarea", "x" * 10_000)
    page.click("#pg-generate")
    expect_error(page, "10000 characters")
    page.fill("#pg-text textarea", "Hello, world.")
    for upload, message in ((short, "0.20 s"), (junk, "as audio")):
        page.locator("#pg-prompt-audio button[aria-label='Clear']").click()
        page.locator("#pg-prompt-audio input[type=file]").set_input_files(str(upload))
        page.wait_for_timeout(800)
        page.click("#pg-generate")
        expect_error(page, message)
    page.locator("#pg-prompt-audio button[aria-label='Clear']").click()
    page.locator("#pg-prompt-audio input[type=file]").set_input_files(
        str(ROOT / "assets/prompts/en_flite_slt.wav")
    )
    steps_a = page.get_by_label("number input for Flow steps A")
    steps_a.fill("0")
    steps_a.press("Enter")
    page.click("#pg-generate")
    expect_error(page, "configuration A: flow_steps must be between 1")
    steps_a.fill("3")
    steps_a.press("Enter")
    page.click("#pg-generate")
    wait_for_work(page, "#pg-status", "New pair")  # still usable
    assert "float32-n3" in page.inner_text("#pg-info-a")
    page.close()


def test_blind_two_trials_with_reload(browser, server) -> None:
    # The experimenter pre-generates the clips of the active plan (needs the admin password).
    admin = open_app(browser, server)
    admin.get_by_role("tab", name="Blind test").click()
    admin.locator("text=Experimenter: test plan and clip generation").click()
    assert "Enter the admin password" in admin.inner_text("#blind-plan-status")
    admin.click("#blind-generate")
    expect_error(admin, "wrong admin password")
    admin.fill("#blind-admin-pw input", PASSWORD)
    admin.click("#blind-generate")
    wait_for_work(admin, "#blind-plan-status", "6 / 6 generated")
    # The automatic screen of the bank, before the test is opened: a table row per configuration and the plot.
    admin.click("#blind-screen")
    wait_for_work(admin, "#blind-screen-summary", "Screen of the bank (6 clips")
    summary = admin.inner_text("#blind-screen-summary")
    assert all(f"float32-n{n}\t2\t" in summary for n in (10, 2, 7)), summary  # 2 clips each
    playwright_api.expect(admin.locator("#blind-screen-plot")).to_be_visible()
    screenshot(admin, "blind_screen")
    admin.close()

    page = open_app(browser, server, "browser-blind")
    page.get_by_role("tab", name="Blind test").click()
    screenshot(page, "blind")
    page.click("#blind-start")
    wait_text(page, "#blind-counter", "Trial 1 of 3")
    html = page.content()
    assert not any(label in html for label in SECRET_LABELS)  # mapping not in the browser
    bank_keys = [p.stem for p in (server["data"] / "clips").rglob("*.wav")]
    assert len(bank_keys) == 6 and not any(key[:16] in html for key in bank_keys)  # nor the clips' keys
    choose(page, "blind-score-1", "5 · Excellent")
    choose(page, "blind-score-2", "3 · Fair")
    choose(page, "blind-preference", "Clip 1")
    page.click("#blind-rate")
    expect_error(page, "listen to both clips")
    assert visible_error_badges(page) == 0  # one message, the other outputs as they were
    assert page.inner_text("#blind-counter").startswith("Trial 1 of 3")

    assert not page.locator("#blind-audio-1 button.playback").is_visible()  # no 1.5x / 2x playback
    # Both at once: starting clip 2 pauses clip 1. Then a partial listening does not count.
    press(page, "blind-audio-1", "Play")
    playwright_api.expect(page.locator("#blind-audio-1 .play-pause-wrapper button[aria-label='Pause']")).to_be_visible()
    press(page, "blind-audio-2", "Play")
    playwright_api.expect(page.locator("#blind-audio-1 .play-pause-wrapper button[aria-label='Play']")).to_be_visible()
    assert player_state(page, "blind-audio-2") == "Pause"
    press(page, "blind-audio-2", "Pause")
    page.click("#blind-rate")
    expect_error(page, "not heard to the end yet: clip 1 and 2")
    play(page, "blind-audio-1")
    page.click("#blind-rate")
    expect_error(page, "not heard to the end yet: clip 2")
    play(page, "blind-audio-2")
    page.click("#blind-rate")
    wait_text(page, "#blind-status", "Saved")
    assert not any(label in page.content() for label in SECRET_LABELS)  # no reveal after a vote
    screenshot(page, "blind_rated")
    playwright_api.expect(page.locator("#blind-rate")).to_be_disabled()  # one rating per trial
    page.click("#blind-next")
    wait_text(page, "#blind-counter", "Trial 2 of 3")

    page.reload()  # a new browser session: the id is asked again, progress comes from the CSV
    page.wait_for_selector("#listener-id textarea")
    page.fill("#listener-id textarea", "browser-blind")
    page.click("#listener-set")
    page.get_by_role("tab", name="Blind test").click()
    page.click("#blind-start")
    wait_text(page, "#blind-counter", "Trial 2 of 3")
    play(page, "blind-audio-1")
    play(page, "blind-audio-2")
    choose(page, "blind-score-1", "2 · Poor")
    choose(page, "blind-score-2", "4 · Good")
    choose(page, "blind-preference", "No preference")
    page.click("#blind-rate")
    wait_text(page, "#blind-status", "Saved")
    mine = [r for r in csv_rows(server) if r["listener_id"] == "browser-blind"]
    assert (
        len(mine) == 2 and len({r["trial_id"] for r in mine}) == 2 and {r["mode"] for r in mine} == {"blind"}
    )
    first, second = mine
    assert (
        first["preference"] == first["shown_first"] and first[f"score_{first['shown_first'].lower()}"] == "5"
    )
    assert second["preference"] == "none" and second[f"score_{second['shown_first'].lower()}"] == "2"
    assert all(r["a_config"] == "float32-n10" and r["b_config"] in SECRET_LABELS for r in mine)
    assert all(r["a_plays"] == r["b_plays"] == "1" for r in mine)
    page.close()


def test_results_tab_matches_the_csv(browser, server, tmp_path: Path) -> None:
    page = open_app(browser, server)
    page.get_by_role("tab", name="Results").click()
    page.click("#results-refresh")
    expect_error(page, "wrong admin password")
    page.fill("#results-password input", PASSWORD)
    page.locator("label:has-text('All (blind and playground)')").click()
    page.click("#results-refresh")
    wait_text(page, "#results-method", "cluster-t", 60_000)
    screenshot(page, "results")
    scores: dict[str, list[int]] = {}
    for r in csv_rows(server):  # an independent read of the log
        for side in "ab":
            scores.setdefault(r[f"{side}_config"], []).append(int(r[f"score_{side}"]))
    cells = page.evaluate(
        "() => [...document.querySelectorAll('#results-table [role=row].virtual-row')]"
        ".map(r => [...r.querySelectorAll('[role=gridcell]')].map(c => c.innerText.trim()))"
    )
    shown = {row[0]: row for row in cells if row}
    assert set(shown) == set(scores), cells
    for config, values in scores.items():
        assert shown[config][1] == str(len(values))  # ratings
        assert shown[config][4] == f"{sum(values) / len(values):.2f}"  # MOS
    assert shown["float32-n10"][9] == "baseline"
    files = re.sub(r"\s+", "", page.text_content("#results-files"))  # names are split into stem + suffix
    assert re.search(r"ratings-\d{8}T\d{6}Z\.csv", files) and "rating-sheet.xlsx" in files
    page.close()


def test_panel_shows_the_active_plan_and_a_loaded_file_fills_the_form(browser, server) -> None:
    page = open_app(browser, server)
    page.get_by_role("tab", name="Blind test").click()
    page.locator("text=Experimenter: test plan and clip generation").click()
    assert "Enter the admin password" in page.inner_text("#blind-plan-status")  # locked: nothing named
    page.fill("#blind-admin-pw input", PASSWORD)
    page.click("text=Refresh status")
    wait_text(page, "#blind-plan-status", "browser plan")
    playwright_api.expect(page.get_by_label("Plan name")).to_have_value("browser plan")  # the form too
    page.locator("#blind-plan-file input[type=file]").set_input_files(str(ROOT / "assets/plans/example.yaml"))
    wait_text(page, "#blind-plan-status", "flow steps only (English)")
    playwright_api.expect(page.get_by_label("Plan name")).to_have_value("flow steps only (English)")
    playwright_api.expect(page.get_by_label("Trials per listener")).to_have_value("16")
    playwright_api.expect(page.get_by_label("More configurations (e.g. float32-n3, bfloat16-n7)")).to_have_value(
        "float32-n3"
    )
    page.reload()  # the next page load shows the locked panel again, and the example form
    page.get_by_role("tab", name="Blind test").click()
    page.locator("text=Experimenter: test plan and clip generation").click()
    wait_text(page, "#blind-plan-status", "Enter the admin password")
    page.close()


def test_chromium_is_debians() -> None:
    assert shutil.which("chromium") == str(CHROMIUM)
