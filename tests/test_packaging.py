"""A regular (non-editable) install carries the shipped configs: the wheel holds every recipe, and the
installed package lists and resolves them from any directory."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from ccnet.config import CONFIG_DIR

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted(path.relative_to(CONFIG_DIR).as_posix() for path in CONFIG_DIR.rglob("*.yaml"))


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(out)]
    subprocess.run([*command, str(ROOT)], check=True, capture_output=True, text=True, timeout=300)
    (path,) = out.glob("ccnet_seg-*.whl")
    return path


def test_the_wheel_holds_every_recipe(wheel: Path):
    assert "default.yaml" in RECIPES and "_base/cityscapes-769x769.yaml" in RECIPES
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = [recipe for recipe in RECIPES if f"ccnet/config/recipes/{recipe}" not in names]
    assert missing == []


def test_installed_package_lists_and_prints_recipes_from_another_directory(wheel: Path, tmp_path: Path):
    target = tmp_path / "site"
    install = [sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(target), str(wheel)]
    subprocess.run(install, check=True, capture_output=True, text=True, timeout=300)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target)}

    def ccnet(*args: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "ccnet", *args], cwd=elsewhere, env=env, capture_output=True, text=True
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    where = subprocess.run(
        [sys.executable, "-c", "import ccnet; print(ccnet.__file__)"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(where.stdout.strip()).is_relative_to(target)  # the installed copy, not this checkout
    listed = {line.split()[0] for line in ccnet("train", "--list").splitlines()}
    assert listed == {Path(recipe).stem for recipe in RECIPES if "/" not in recipe}
    printed = ccnet("train", "ccnet_r50-d8_4xb2-80k_cityscapes-769x769", "--print-config")
    assert "name: ccnet_r50-d8_4xb2-80k_cityscapes-769x769" in printed and "mode: slide" in printed
    assert "name: ccnet_tiny" in ccnet("train", "--print-config")  # the default run
