"""Mutation pass: plausible one-line bugs put into a copy of the code one at a time; which do the tests catch?

Each mutation (listed as data in ``scripts/mutations.yaml``) names a file, an exact snippet of it, the
replacement (the bug), the tests to run and a one-line description. The pass copies ``src/``, ``tests/`` and
the project files to a temporary directory (the working tree is never touched), checks that the copy is what
``import ccnet`` loads there, runs each mutation's tests once unmutated (a failing baseline would make every
"kill" meaningless), then for each mutation: applies it, runs its tests with a timeout, restores the file.
A mutation is *killed* when its tests fail (or error, or time out) and *survives* when they pass.

    python scripts/mutation_pass.py                  # every mutation; prints a table and the score
    python scripts/mutation_pass.py --only 3 --only 5
    python scripts/mutation_pass.py --list           # the numbered mutations, nothing run

Exit status: 0 when every mutation was killed, 1 when one survived (or its entry is unusable), 2 on bad input.

Adding a mutation: append an entry to the YAML file (see its header); the snippet must occur exactly once in
the file, so include enough context (multi-line snippets are fine: YAML ``|-`` blocks keep indentation).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MUTATIONS = Path(__file__).resolve().with_name("mutations.yaml")
# what the tests need from the project root (src layout; the tests import ``tests.*`` and read README.md)
COPIED = ("src", "tests", "benchmarks", "pyproject.toml", "README.md")
PYTEST = ("-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "--no-header", "-o", "addopts=")
FIELDS = {"file", "original", "replacement", "tests", "description", "timeout"}


class MutationFileError(ValueError):
    """The mutation list is unusable: the message names the entry and what is wrong."""


@dataclass
class Mutation:
    number: int  # 1-based position in the list (what --only takes)
    file: str
    original: str
    replacement: str
    tests: list[str]
    description: str
    timeout: float | None = None


@dataclass
class Outcome:
    mutation: Mutation
    status: str  # killed | survived | timeout | error (its tests could not run: not counted)
    seconds: float
    detail: str = ""
    output: list[str] = field(default_factory=list)


def load_mutations(path: Path, root: Path) -> list[Mutation]:
    """The entries of ``path``, each checked against the files under ``root`` (snippet found exactly once)."""
    try:
        entries = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise MutationFileError(f"{path}: cannot read the mutation list: {error}") from None
    if not isinstance(entries, list) or not entries:
        raise MutationFileError(f"{path}: expected a non-empty YAML list of mutations")
    mutations = []
    for number, entry in enumerate(entries, start=1):
        where = f"{path}: mutation {number}"
        if not isinstance(entry, dict):
            raise MutationFileError(f"{where}: expected a mapping, got {type(entry).__name__}")
        unknown = set(entry) - FIELDS
        missing = FIELDS - {"timeout"} - set(entry)
        if unknown or missing:
            raise MutationFileError(
                f"{where}: unknown fields {sorted(unknown)}, missing fields {sorted(missing)}"
            )
        tests = entry["tests"]
        if isinstance(tests, str):
            tests = [tests]
        if not tests or not all(isinstance(t, str) for t in tests):
            raise MutationFileError(
                f"{where}: 'tests' must be a test path / node id or a list of pytest args"
            )
        mutation = Mutation(
            number=number,
            file=str(entry["file"]),
            original=str(entry["original"]),
            replacement=str(entry["replacement"]),
            tests=list(tests),
            description=str(entry["description"]),
            timeout=None if entry.get("timeout") is None else float(entry["timeout"]),
        )
        where += f" ({mutation.description})"
        source = root / mutation.file
        if not source.is_file():
            raise MutationFileError(f"{where}: file {mutation.file} does not exist under {root}")
        count = source.read_text().count(mutation.original)
        if count != 1:
            raise MutationFileError(
                f"{where}: the original snippet occurs {count} times in {mutation.file} (must be exactly "
                "once; the code may have changed since the entry was written)"
            )
        if mutation.original == mutation.replacement:
            raise MutationFileError(f"{where}: the replacement equals the original")
        mutations.append(mutation)
    return mutations


def copy_tree(root: Path, destination: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", ".pytest_cache")
    for name in COPIED:
        source = root / name
        if source.is_dir():
            shutil.copytree(source, destination / name, ignore=ignore)
        elif source.is_file():
            shutil.copy2(source, destination / name)


def child_env(copy: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(copy / "src"), env.get("PYTHONPATH")]))
    # no .pyc files: a mutated source of the same size and mtime second must never run from a stale cache
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def check_import(python: str, copy: Path) -> None:
    """Fail unless ``import ccnet`` in the copy loads the copy (not the editable install of the tree)."""
    found = subprocess.run(
        [python, "-c", "import ccnet; print(ccnet.__file__)"],
        cwd=copy,
        env=child_env(copy),
        capture_output=True,
        text=True,
        check=False,
    )
    location = Path(found.stdout.strip() or "?").resolve()
    if found.returncode != 0 or copy.resolve() not in location.parents:
        raise RuntimeError(
            f"the copy in {copy} does not import its own ccnet (got {location}): {found.stderr}"
        )


def run_tests(python: str, copy: Path, tests: list[str], timeout: float) -> tuple[str, float, list[str]]:
    """(status, seconds, last output lines) of one pytest run in the copy."""
    start = time.monotonic()
    process = subprocess.Popen(
        [python, *PYTEST, *tests],
        cwd=copy,
        env=child_env(copy),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: a timeout kills the workers it started too
    )
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        return "timeout", time.monotonic() - start, [f"timed out after {timeout:.0f} s"]
    seconds = time.monotonic() - start
    lines = output.strip().splitlines()[-15:]
    # pytest: 0 all passed, 1 some failed, 2 interrupted (e.g. an import error at collection), 3 internal
    # error, 4 usage error, 5 no tests collected
    status = {0: "passed", 1: "failed", 2: "failed", 3: "failed"}.get(process.returncode, "error")
    return status, seconds, lines


def mutate(copy: Path, mutation: Mutation) -> str:
    """Apply ``mutation`` in the copy; returns the original text for restoring."""
    path = copy / mutation.file
    text = path.read_text()
    path.write_text(text.replace(mutation.original, mutation.replacement, 1))
    return text


def run_pass(
    mutations: list[Mutation], *, python: str, timeout: float, baseline: bool, keep: bool, verbose: bool
) -> list[Outcome]:
    copy = Path(tempfile.mkdtemp(prefix="ccnet-mutation-"))
    outcomes = []
    try:
        copy_tree(ROOT, copy)
        check_import(python, copy)
        print(f"copy of {ROOT} in {copy}; {len(mutations)} mutation(s)", flush=True)
        broken: dict[tuple[str, ...], list[str]] = {}
        if baseline:
            for tests in dict.fromkeys(tuple(m.tests) for m in mutations):
                status, seconds, lines = run_tests(python, copy, list(tests), timeout)
                print(
                    f"baseline {'ok  ' if status == 'passed' else 'FAIL'} {seconds:6.1f}s  {' '.join(tests)}"
                )
                if status != "passed":
                    broken[tests] = lines
        print(f"\n{'#':>3}  {'result':<8} {'time':>7}  {'file':<34} description", flush=True)
        for mutation in mutations:
            if tuple(mutation.tests) in broken:
                outcome = Outcome(
                    mutation, "error", 0.0, "its tests fail unmutated", broken[tuple(mutation.tests)]
                )
            else:
                original = mutate(copy, mutation)
                try:
                    status, seconds, lines = run_tests(
                        python, copy, mutation.tests, mutation.timeout or timeout
                    )
                finally:
                    (copy / mutation.file).write_text(original)
                result = {"passed": "survived", "failed": "killed", "timeout": "timeout"}.get(status, "error")
                detail = "pytest could not run the tests" if result == "error" else ""
                outcome = Outcome(mutation, result, seconds, detail, lines)
            outcomes.append(outcome)
            print(
                f"{mutation.number:>3}  {outcome.status:<8} {outcome.seconds:6.1f}s  {mutation.file:<34} "
                f"{mutation.description}",
                flush=True,
            )
            if verbose or outcome.status == "error":
                print("       " + "\n       ".join(outcome.output[-6:]))
    finally:
        if keep:
            print(f"kept the copy in {copy}")
        else:
            shutil.rmtree(copy, ignore_errors=True)
    return outcomes


def summary(outcomes: list[Outcome]) -> str:
    killed = [o for o in outcomes if o.status in ("killed", "timeout")]
    survived = [o for o in outcomes if o.status == "survived"]
    errors = [o for o in outcomes if o.status == "error"]
    counted = len(killed) + len(survived)
    score = f"{100 * len(killed) / counted:.0f}%" if counted else "n/a"
    lines = [f"\nmutation score: {len(killed)} killed of {counted} ({score}); {len(survived)} survived"]
    if errors:
        lines.append(
            f"{len(errors)} not counted (tests could not run): {[o.mutation.number for o in errors]}"
        )
    for outcome in survived:
        m = outcome.mutation
        lines.append(f"  survived #{m.number} {m.file}: {m.description} (tests: {' '.join(m.tests)})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mutations", type=Path, default=DEFAULT_MUTATIONS, help="the YAML mutation list")
    parser.add_argument("--only", type=int, action="append", metavar="N", help="run mutation N (repeatable)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per test run [600]")
    parser.add_argument("--python", default=sys.executable, help="interpreter that runs pytest [this one]")
    parser.add_argument("--no-baseline", action="store_true", help="skip the unmutated runs of the tests")
    parser.add_argument("--list", action="store_true", help="print the mutations and exit")
    parser.add_argument("--keep", action="store_true", help="keep the temporary copy")
    parser.add_argument("--verbose", action="store_true", help="print the end of each pytest output")
    args = parser.parse_args(argv)
    try:
        mutations = load_mutations(args.mutations, ROOT)
    except MutationFileError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.only:
        bad = [n for n in args.only if not 1 <= n <= len(mutations)]
        if bad:
            print(f"error: --only {bad}: the list has mutations 1..{len(mutations)}", file=sys.stderr)
            return 2
        mutations = [m for m in mutations if m.number in set(args.only)]
    if args.list:
        for m in mutations:
            print(f"{m.number:>3}  {m.file:<34} {m.description}\n     tests: {' '.join(m.tests)}")
        return 0
    if args.timeout <= 0:
        print(f"error: --timeout must be positive, got {args.timeout}", file=sys.stderr)
        return 2
    outcomes = run_pass(
        mutations,
        python=args.python,
        timeout=args.timeout,
        baseline=not args.no_baseline,
        keep=args.keep,
        verbose=args.verbose,
    )
    print(summary(outcomes))
    return 0 if all(o.status in ("killed", "timeout") for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
