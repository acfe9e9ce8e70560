"""Helpers of the bad-input catalogue tests: run the real ``ccnet`` command line in a subprocess, check that
it ends in one clear line, and that files a user already had are left untouched."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

TIMEOUT = 300


def run_cli(*args: str, cwd: str | os.PathLike | None = None, env: dict[str, str] | None = None):
    """``python -m ccnet ARGS`` in a subprocess (progress bars off through ``train.progress`` where given)."""
    return subprocess.run(
        [sys.executable, "-m", "ccnet", *map(str, args)],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )


def assert_one_line_error(
    result: subprocess.CompletedProcess, code: int, command: str, *fragments: str
) -> str:
    """The command failed with exit ``code`` and one ``ccnet <command>: error: ...`` line on stderr naming
    every fragment (file, key, value), and no traceback. Returns that line."""
    errors = [line for line in result.stderr.splitlines() if line.startswith(f"ccnet {command}: error: ")]
    assert result.returncode == code, (result.returncode, result.stderr[-3000:])
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout, result.stderr[-3000:]
    assert len(errors) == 1, result.stderr[-3000:]
    for fragment in fragments:
        assert fragment in errors[0], (fragment, errors[0])
    return errors[0]


def tree_hash(folder: str | os.PathLike) -> dict[str, str]:
    """Relative path -> sha256 of every file under ``folder`` (compare before and after a command)."""
    root = Path(folder)
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }
