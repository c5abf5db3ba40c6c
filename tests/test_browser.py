"""The page of `digits serve` in a real browser: Debian's headless Chromium, driven by Selenium
through Debian's chromedriver (nothing is downloaded).

It draws a 7 with pointer events and expects the page to say 7, corrects it, clears it, chooses
a picture file, and opens the results view, which must list the committed test accuracy.
The model is data/model.keras (`dvc checkout` or `dvc repro`); in a fresh clone without it, one
trained here for a few seconds on the real MNIST from $MNIST_MIRROR. Under CI (CI set) a browser or
model that is missing fails the test instead of skipping it.

    DIGITS_SCREENSHOT_DIR=src/digits/web pytest tests/test_browser.py   # the README's pictures
"""

import dataclasses
import io
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import PROJECT_ROOT, TINY, cannot_run, start_serve
from PIL import Image

from digits.paths import METRICS, MODEL
from digits.serve_bench import drawn_seven

pytestmark = pytest.mark.integration

# Debian's packages (apt-get install chromium chromium-driver), or another Chrome and its driver
# named by these variables (GitHub's runners have Google Chrome: see .github/workflows/tests.yml)
CHROMIUM = os.environ.get("DIGITS_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("DIGITS_CHROMEDRIVER") or (
    f"{os.environ['CHROMEWEBDRIVER']}/chromedriver"  # set on GitHub's runners
    if "CHROMEWEBDRIVER" in os.environ
    else "/usr/bin/chromedriver"
)
WAIT_S = 30  # for an answer from the page; the machine may be busy
SCREENSHOT_COLOURS = 64  # palette PNGs: a tenth of the size, no visible loss on a flat page


@pytest.fixture(scope="module")
def browser():
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError as error:
        cannot_run(f"selenium is not installed ({error}): pip install -r requirements.txt")
    for program in (CHROMIUM, CHROMEDRIVER):
        if not shutil.which(program):
            cannot_run(f"{program} is missing: apt-get install -y chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.add_argument("--window-size=1000,1100")
    try:
        driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    except Exception as error:  # WebDriverException, or the driver failing to start
        cannot_run(f"headless Chromium does not start: {str(error).splitlines()[0]}")
    yield driver
    driver.quit()


def quick_model(mirror: str, path: Path) -> Path:
    """A dense model trained for two epochs on the real MNIST training images from ``mirror``
    (a directory or URL, as $MNIST_MIRROR): about 97 %, enough to read a clearly drawn digit."""
    from digits.data import scale_pixels
    from digits.deskew import deskew
    from digits.fetch import candidate_sources, fetch_verified
    from digits.idx import parse_idx_images, parse_idx_labels
    from digits.model import build_model, train_model
    from digits.params import load_params
    from digits.saving import save_model

    download = load_params(PROJECT_ROOT / "params.yaml").download
    sources = candidate_sources(mirror, download.mirrors)  # as the download stage tries them

    def fetched(name: str) -> bytes:
        return fetch_verified(sources, download.files[name], download.timeout_s, 1, False)

    images = parse_idx_images(fetched("train_images"))
    labels = parse_idx_labels(fetched("train_labels"))
    x, y = scale_pixels(deskew(images)), labels  # as the preprocess stage gives them
    params = dataclasses.replace(
        TINY, hidden_units=(128,), dropout=(0.0,), batch_size=128, epochs=2, learning_rate=0.002
    )
    model = build_model(params, n_train=len(x))
    train_model(model, (x, y), (x[:1000], y[:1000]), params, callbacks=[], verbose=0)
    save_model(model, path)
    return path


@pytest.fixture(scope="module")
def served_model(tmp_path_factory) -> Path:
    committed = PROJECT_ROOT / MODEL
    if committed.is_file():
        return committed
    mirror = os.environ.get("MNIST_MIRROR")
    if not mirror:
        cannot_run(f"no {MODEL} (dvc checkout) and no MNIST_MIRROR to train one from")
    return quick_model(mirror, tmp_path_factory.mktemp("model") / "model.keras")


@pytest.fixture(scope="module")
def page(served_model, tmp_path_factory):
    """`digits serve --port 0` from the project root: (url, own_dir)."""
    own_dir = tmp_path_factory.mktemp("own")
    process = start_serve(
        "--port", "0", "--model", str(served_model), "--own-dir", str(own_dir),
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        found = re.search(r"at (http://127\.0\.0\.1:\d+/)", process.stdout.readline())
        assert found, "digits serve printed no address"
        yield found[1], own_dir
    finally:
        process.terminate()
        process.wait(timeout=30)


def wait_for_text(driver, element_id: str, expected: str) -> str:
    """Wait until the element's text matches the regular expression ``expected``; return it."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    def shown(driver) -> bool:
        return re.fullmatch(expected, driver.find_element("id", element_id).text) is not None

    try:
        WebDriverWait(driver, WAIT_S).until(shown)
    except TimeoutException:
        actual = driver.find_element("id", element_id).text
        status = driver.find_element("id", "status").text
        raise AssertionError(
            f"#{element_id} shows {actual!r}, not {expected!r}; {status}"
        ) from None
    return driver.find_element("id", element_id).text


def draw(driver, strokes: list[list[tuple[int, int]]]) -> None:
    """Draw ``strokes`` on the canvas with the pointer (offsets from its centre, CSS px)."""
    from selenium.webdriver import ActionChains

    canvas = driver.find_element("id", "canvas")
    for stroke in strokes:
        actions = ActionChains(driver, duration=20)
        actions.move_to_element_with_offset(canvas, *stroke[0]).click_and_hold()
        for (x0, y0), (x1, y1) in zip(stroke, stroke[1:], strict=False):
            for _ in range(5):  # several moves a segment, as a hand makes
                actions.move_by_offset(round((x1 - x0) / 5), round((y1 - y0) / 5))
        actions.release().perform()


SEVEN = [[(-70, -85), (70, -85), (-15, 95)]]


def save_screenshot(driver, name: str, directory: Path) -> Path:
    """A palette PNG of the window in ``directory`` (and $DIGITS_SCREENSHOT_DIR if set)."""
    image = Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB")
    small = image.quantize(SCREENSHOT_COLOURS, method=Image.Quantize.MEDIANCUT)
    path = directory / name
    small.save(path, format="PNG", optimize=True)
    if os.environ.get("DIGITS_SCREENSHOT_DIR"):
        shutil.copy(path, Path(os.environ["DIGITS_SCREENSHOT_DIR"]) / name)
    return path


def test_a_drawn_seven_is_read_corrected_and_cleared(browser, page, tmp_path):
    url, own_dir = page
    browser.get(url)
    wait_for_text(browser, "digit", r"\?")

    draw(browser, SEVEN)

    wait_for_text(browser, "digit", "7")
    bars = browser.find_elements("css selector", "#bars li")
    assert len(bars) == 10
    assert bars[7].get_attribute("class") == "top"
    fill, track = (
        bars[7].find_element("css selector", part).size["width"] for part in (".fill", ".track")
    )
    assert fill > track / 2  # the bar shows the probability, not just the number beside it
    frame = browser.find_element("id", "frame").get_attribute("src")
    assert frame.startswith("data:image/png;base64,")
    save_screenshot(browser, "screenshot-draw.png", tmp_path)

    browser.find_element("css selector", "#labels button:nth-child(2)").click()  # "It is a 1"
    filed = wait_for_text(browser, "filed", r"Thanks: filed as a 1 in .+\.")
    assert filed == f"Thanks: filed as a 1 in {next((own_dir / '1').iterdir())}."

    browser.find_element("id", "canvas").send_keys("u")  # keyboard: undo the only stroke
    wait_for_text(browser, "digit", r"\?")
    draw(browser, SEVEN)
    wait_for_text(browser, "digit", "7")
    browser.find_element("id", "clear").click()
    wait_for_text(browser, "digit", r"\?")


def test_a_chosen_picture_file_is_read(browser, page, tmp_path):
    url, _ = page
    picture = tmp_path / "seven.png"
    picture.write_bytes(drawn_seven())
    browser.get(url)

    browser.find_element("id", "file").send_keys(str(picture))

    wait_for_text(browser, "digit", "7")


def test_the_results_view_lists_the_committed_accuracy(browser, page, tmp_path):
    url, _ = page
    metrics = json.loads((PROJECT_ROOT / METRICS).read_text())
    browser.get(url)

    browser.find_element("id", "tab-results").click()

    wait_for_text(browser, "accuracy", re.escape(f"{100 * metrics['accuracy']:.2f} %"))
    rows = browser.find_elements("css selector", "#per-digit tbody tr")
    assert [row.find_element("tag name", "th").text for row in rows] == list("0123456789")
    figures = browser.find_elements("css selector", "#figures img")
    assert len(figures) == 3
    assert all(browser.execute_script("return arguments[0].naturalWidth", f) > 0 for f in figures)
    save_screenshot(browser, "screenshot-results.png", tmp_path)


def test_the_page_fits_a_phone(browser, page):
    url, _ = page
    browser.set_window_size(390, 844)
    try:
        browser.get(url)
        wait_for_text(browser, "digit", r"\?")
        width = browser.execute_script("return document.documentElement.scrollWidth")
        canvas = browser.find_element("id", "canvas").size["width"]
    finally:
        browser.set_window_size(1000, 1100)
    assert width <= 390  # nothing to scroll sideways
    assert 250 <= canvas <= 340
