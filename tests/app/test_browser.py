"""``ccnet app`` end to end in a real browser: served in a subprocess, driven in headless Chromium."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tests.app.browser import chromium, click_image, fetch_picture, missing_browser, serving, upload

pytestmark = pytest.mark.skipif(missing_browser() is not None, reason=str(missing_browser()))


def test_upload_segment_and_explore_attention_in_chromium(tmp_path):
    image = np.zeros((96, 128, 3), dtype=np.uint8)
    image[20:50, 30:70] = (200, 60, 40)
    image[60:90, 80:120] = (40, 180, 60)
    Image.fromarray(image).save(tmp_path / "input.png")
    with serving(tmp_path) as url, chromium(tmp_path / "profile") as driver:
        driver.get(url)
        overlay = fetch_picture(upload(driver, tmp_path / "input.png"))
        assert overlay.shape == (192, 256, 3)  # 128 x 96 shown enlarged x2
        first = click_image(driver, 0.25, 0.25)
        status = driver.find_element("css selector", "#cell").text
        second = click_image(driver, 0.8, 0.8, previous=first["combined"])
        assert "Feature cell row" in status and driver.find_element("css selector", "#cell").text != status
        for name in ("loop1", "loop2", "combined"):
            a, b = fetch_picture(first[name]), fetch_picture(second[name])
            assert a.shape == b.shape == (192, 256, 3)
            assert np.abs(a.astype(int) - b).sum() > 0, name  # another pixel: other weights
        driver.save_screenshot(str(tmp_path / "app.png"))
    assert (tmp_path / "app.png").stat().st_size > 10_000
