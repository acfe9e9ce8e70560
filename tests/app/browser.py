"""Driving ``ccnet app`` in headless Chromium (Debian's chromium + chromium-driver, selenium): shared by the
browser test and the README screenshot.

    python -m tests.app.browser --weights runs/default/<time> --out docs/app.png

serves the app on a free port, uploads the image (default: a validation sample of the built-in context
task), clicks a pixel and saves a screenshot of the page.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
# a closed network: nothing in the background may try to reach out
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)


def missing_browser() -> str | None:
    """Why the browser cannot run here (None when it can)."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (the dev extra)"
    for path in (CHROMIUM, CHROMEDRIVER):
        if not (Path(path).exists() or shutil.which(Path(path).name)):
            return f"{path} is missing (apt-get install chromium chromium-driver)"
    return None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def serving(folder: Path, *options: str, timeout: float = 120.0) -> Iterator[str]:
    """``ccnet app`` in a subprocess (working folder ``folder``, output in ``folder/app.log``); yields its
    URL once it answers; stops it on exit."""
    port = free_port()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1"}
    log = open(folder / "app.log", "w")  # noqa: SIM115 - closed below, after the process
    process = subprocess.Popen(
        [sys.executable, "-m", "ccnet", "app", "--port", str(port), *options],
        cwd=folder,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"ccnet app exited with {process.returncode}: {(folder / 'app.log').read_text()}"
                )
            try:
                urllib.request.urlopen(url, timeout=2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"ccnet app did not answer within {timeout} s") from None
                time.sleep(0.3)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@contextlib.contextmanager
def chromium(profile: Path, width: int = 1400, height: int = 1560):  # -> Iterator[WebDriver]
    """Headless Chromium under selenium, with a fresh profile folder."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument(f"--window-size={width},{height}")
    options.binary_location = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(driver, css: str, timeout: float = 60.0, changed_from: str | None = None) -> str:
    """The ``src`` of the image at ``css`` once it is shown (and differs from ``changed_from``)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def source(d) -> str | None:
        found = d.find_elements(By.CSS_SELECTOR, css)
        src = found[0].get_attribute("src") if found else None
        return src if src and src != changed_from else None

    return WebDriverWait(driver, timeout, poll_frequency=0.2).until(source)


def upload(driver, path: Path) -> str:
    """Upload the image file; the overlay's ``src`` once the page shows it."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 60).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, "#image-upload input[type=file]")
    )
    driver.find_element(By.CSS_SELECTOR, "#image-upload input[type=file]").send_keys(str(path))
    return wait_for(driver, "#overlay img")


def click_image(driver, fx: float, fy: float, previous: str | None = None) -> dict[str, str]:
    """Click the explorer's image at fraction (fx, fy) of its width and height; the ``src`` of the loop-1,
    loop-2 and combined pictures once they show the new click."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    image = driver.find_element(By.CSS_SELECTOR, "#click img")
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", image)
    width, height = image.size["width"], image.size["height"]
    # offsets are from the element's centre
    ActionChains(driver).move_to_element_with_offset(
        image, int((fx - 0.5) * width), int((fy - 0.5) * height)
    ).click().perform()
    combined = wait_for(driver, "#combined img", changed_from=previous)
    return {
        "loop1": wait_for(driver, "#loop1 img"),
        "loop2": wait_for(driver, "#loop2 img"),
        "combined": combined,
    }


def fetch_picture(url: str):  # -> np.ndarray
    """The picture at ``url`` as an array."""
    import io

    import numpy as np
    from PIL import Image

    with urllib.request.urlopen(url, timeout=10) as response:
        return np.array(Image.open(io.BytesIO(response.read())).convert("RGB"))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--weights", default=None)
    parser.add_argument("--image", default=None, help="default: sample 3 of the built-in task's val split")
    parser.add_argument("--click", nargs=2, type=float, default=(0.2, 0.68), help="fractions x y")
    parser.add_argument("--out", default="docs/app.png")
    args = parser.parse_args()
    import tempfile

    from PIL import Image

    folder = Path(tempfile.mkdtemp(prefix="ccnet-screenshot-"))
    image = Path(args.image) if args.image else folder / "context_sample.png"
    if not args.image:
        from ccnet.data import ContextDataset

        Image.fromarray(ContextDataset(split="val", length=8).generate(3)[0]).save(image)
    options = []
    if args.weights and Path(args.weights).is_dir():  # shown on the page as the usual runs/default/<time>
        shutil.copytree(args.weights, folder / "runs" / "default" / Path(args.weights).resolve().name)
        options = ["--weights", f"runs/default/{Path(args.weights).resolve().name}"]
    elif args.weights:
        options = ["--weights", str(Path(args.weights).resolve())]
    with serving(folder, *options) as url, chromium(folder / "profile") as driver:
        driver.get(url)
        upload(driver, image.resolve())
        click_image(driver, *args.click)
        time.sleep(1.0)  # let the pictures finish fading in
        driver.execute_script("window.scrollTo(0, 0);")
        driver.save_screenshot(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
