"""Helpers of the bad-input catalogue tests: run the real ``ccnet`` command line in a subprocess, check that
it ends in one clear line, and that files a user already had are left untouched.

Starting Python with torch takes seconds, more than most failing commands, so :func:`cli_server` runs many
command lines one after the other in one long-lived ``python`` process through the real entry point
``ccnet.cli.main`` (exit code, stdout and stderr as a fresh process would show them); cases where the process
itself matters (environment variables, signals, worker processes) use :func:`run_cli`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
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


# Runs command lines sent as JSON on stdin through ccnet.cli.main, as `python -m ccnet` would: an uncaught
# exception prints its traceback and exits 1, SystemExit gives its code. Answers are marked lines on stdout.
_SERVER = r"""
import contextlib, io, json, logging, os, sys, traceback
from ccnet.cli import main
for request in sys.stdin:
    out, err, environ = io.StringIO(), io.StringIO(), dict(os.environ)
    for handler in list(logging.root.handlers):  # a fresh process has none: each command logs to its stderr
        logging.root.removeHandler(handler)
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(json.loads(request))
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else int(stop.code is not None)
        except BaseException:
            traceback.print_exc()
            code = 1
    os.environ.clear()
    os.environ.update(environ)
    answer = {"code": code, "stdout": out.getvalue(), "stderr": err.getvalue()}
    sys.__stdout__.write("@@ccnet@@" + json.dumps(answer) + "\n")
    sys.__stdout__.flush()
"""
_ANSWER = "@@ccnet@@"


@contextlib.contextmanager
def cli_server(cwd: str | os.PathLike) -> Iterator[Callable[..., subprocess.CompletedProcess]]:
    """``run(*args)`` -> CompletedProcess of ``ccnet ARGS``, all run in one long-lived Python process in
    ``cwd``."""
    server = subprocess.Popen(
        [sys.executable, "-c", _SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=cwd
    )

    def run(*args: object) -> subprocess.CompletedProcess:
        argv = [str(a) for a in args]
        server.stdin.write(json.dumps(argv) + "\n")
        server.stdin.flush()
        while True:
            line = server.stdout.readline()
            assert line, "the CLI server process died"
            if line.startswith(_ANSWER):
                answer = json.loads(line.removeprefix(_ANSWER))
                return subprocess.CompletedProcess(argv, answer["code"], answer["stdout"], answer["stderr"])

    try:
        yield run
    finally:
        server.stdin.close()
        server.wait(timeout=60)


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
