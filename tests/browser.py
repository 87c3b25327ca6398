"""A real browser for the web page's tests and its screenshot: Debian's headless Chromium driven by Selenium through
Debian's chromium-driver (`apt-get install chromium chromium-driver`); nothing is downloaded at run time."""

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path

PAGE_TIMEOUT = 60  # seconds for the page to load and an upload to show
JOB_TIMEOUT = 300  # seconds for a video to be made on 2 busy CPU cores


def _binaries() -> tuple[str | None, str | None]:
    return shutil.which("chromium") or shutil.which("chromium-browser"), shutil.which("chromedriver")


def missing() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    browser, driver = _binaries()
    if browser is None or driver is None:
        return "no headless Chromium here: install Debian's chromium and chromium-driver to run the browser tests"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (`pip install -e .[dev]`)"
    return None


@contextlib.contextmanager
def chromium(width: int = 1280, height: int = 1000) -> Iterator:
    """A headless Chromium window of ``width`` x ``height`` CSS pixels (a Selenium driver), closed on exit."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, driver_path = _binaries()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     f"--window-size={width},{height}", "--autoplay-policy=no-user-gesture-required",
                     "--mute-audio"):  # fmt: skip
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _submit(driver, url: str, photo: Path, audio: Path) -> None:
    """Opens the page, uploads ``photo`` and ``audio`` as a visitor would (the file pickers' inputs), and presses
    the button once both uploads show."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    wait = WebDriverWait(driver, PAGE_TIMEOUT)
    for field, path in (("#photo", photo), ("#speech", audio)):
        wait.until(lambda d, field=field: d.find_elements(By.CSS_SELECTOR, f"{field} input[type=file]"))
        driver.find_element(By.CSS_SELECTOR, f"{field} input[type=file]").send_keys(str(Path(path).resolve()))
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#photo img"))
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#speech audio, #speech canvas"))
    button = driver.find_element(By.CSS_SELECTOR, "#generate")
    WebDriverWait(driver, PAGE_TIMEOUT).until(lambda d: button.is_enabled())
    button.click()


PLAYED = """
const done = arguments[arguments.length - 1];
const video = document.querySelector('#video video');
const state = () => ({error: video.error && video.error.code, readyState: video.readyState, duration: video.duration,
                      videoWidth: video.videoWidth, videoHeight: video.videoHeight, played: video.currentTime});
video.muted = true;
video.play().then(() => setTimeout(() => { video.pause(); done(state()); }, 700), () => done(state()));
"""


def make_video_on_page(driver, url: str, photo: Path, audio: Path) -> dict:
    """Submits ``photo`` and ``audio`` on the page at ``url``, waits for the video, plays it for 0.7 s and returns
    what the browser says of it: ``error`` (a MediaError code or None), ``readyState``, ``duration``,
    ``videoWidth``, ``videoHeight`` and ``played`` (seconds it got through)."""
    from selenium.webdriver.support.ui import WebDriverWait

    _submit(driver, url, photo, audio)
    loaded = "const v = document.querySelector('#video video'); return !!v && v.readyState >= 1 && v.duration > 0;"
    WebDriverWait(driver, JOB_TIMEOUT).until(lambda d: d.execute_script(loaded))
    driver.set_script_timeout(30)
    return driver.execute_async_script(PLAYED)


def error_on_page(driver, url: str, photo: Path, audio: Path) -> str:
    """Submits ``photo`` and ``audio`` on the page at ``url`` and returns the text of the error it shows."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    _submit(driver, url, photo, audio)
    toasts = "[data-testid=toast-body], .toast-body"

    def shown_text(page) -> str:  # a toast's element can be in the page a moment before its text
        return " ".join(element.text for element in page.find_elements(By.CSS_SELECTOR, toasts)).strip()

    return WebDriverWait(driver, JOB_TIMEOUT).until(shown_text)


def text_of(driver, selector: str) -> str:
    """The visible text of the first element that ``selector`` matches."""
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, selector).text
