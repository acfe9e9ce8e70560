"""The README's Python examples run as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_python_block_runs(index, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(BLOCKS[index].replace("/tmp/", f"{tmp_path}/"), f"README block {index}", "exec"), {})


def test_readme_opens_with_the_two_commands():
    first_block = re.search(r"```bash\n(.*?)```", README.read_text(), flags=re.DOTALL).group(1)
    commands = [line for line in first_block.splitlines() if line and not line.startswith("#")]
    assert len(commands) == 2
    assert "pip install" in commands[0] and "pytest" in commands[1]


def test_readme_states_the_tiny_model_size_and_the_test_splits_as_the_code_has_them():
    import ccnet
    from ccnet.data import dataset_class

    text = README.read_text()
    stated = int(re.search(r"~(\d+)k-parameter", text).group(1))
    parameters = sum(p.numel() for p in ccnet.create_model("ccnet_tiny", num_classes=4).parameters())
    assert round(parameters / 1000) == stated
    assert "test" in dataset_class("cityscapes").splits
    for name in ("ade20k", "voc", "lip"):  # "ADE20K, VOC and LIP define no `test` split"
        assert "test" not in dataset_class(name).splits
    assert "ADE20K, VOC and LIP define no\n`test` split" in text
