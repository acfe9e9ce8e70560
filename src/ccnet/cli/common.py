"""Helpers shared by the commands: config arguments, logging, and the one-line error contract.

Every ``ccnet`` command ends a bad input with exactly one line ``ccnet <command>: error: <message>`` on
stderr and exit code 2 (usage or config error) or 1 (bad data, a fault while running); no traceback unless
``ccnet --debug ...`` or the environment variable ``CCNET_DEBUG=1`` asks for one. Commands report the errors
they expect with :func:`fail`; :func:`ccnet.cli.main` turns anything else into the same line through
:func:`error_exit_code` and :func:`error_message`.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback

__all__ = [
    "CONFIG_HELP",
    "DEBUG_ENV",
    "add_config_arguments",
    "debug_enabled",
    "error_exit_code",
    "error_message",
    "fail",
    "non_negative_int",
    "positive_int",
    "rank",
    "setup_logging",
]

CONFIG_HELP = (
    "a config file, the name of a shipped config (ccnet train --list; default: 'default') and/or overrides "
    "key.sub=value (e.g. train.max_iters=200 optim.lr=0.02 data.root=/data/cityscapes)"
)

# Set by `ccnet --debug`, and settable by users of subprocesses / torchrun, where no option reaches main().
DEBUG_ENV = "CCNET_DEBUG"

# The exception types whose message is written for the user: printed as is. ccnet raises ValueError
# subclasses (ConfigError, DatasetError, ...) or TrainingError naming what to change, and OSError messages
# name the file. Anything else is a fault whose message is no sentence for a user ("division by zero"): its
# type is shown too.
_EXPECTED_ERRORS = ("ValueError", "TrainingError", "OSError")

# torch re-raises an exception of a DataLoader worker in the main process with this line and the worker's
# whole traceback in the message; the user needs only the original message at its end.
_WORKER_TRACEBACK = "Original Traceback (most recent call last):"


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("items", nargs="*", metavar="CONFIG|KEY=VALUE", help=CONFIG_HELP)


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (sizes, counts)."""
    return _bounded_int(text, 1)


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0 (worker counts)."""
    return _bounded_int(text, 0)


def _bounded_int(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {value}")
    return value


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def debug_enabled() -> bool:
    """True under ``ccnet --debug`` or ``CCNET_DEBUG=1`` (also ``true`` / ``yes``): show tracebacks."""
    return os.environ.get(DEBUG_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def setup_logging() -> None:
    """INFO messages from rank 0 (WARNING and above from the other ranks), on stderr."""
    logging.basicConfig(
        level=logging.INFO if rank() == 0 else logging.WARNING,
        format="%(asctime)s %(levelname).1s %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )


def _is_expected(error_type: type[BaseException]) -> bool:
    return any(cls.__name__ in _EXPECTED_ERRORS for cls in error_type.__mro__)


def _is_expected_name(type_name: str) -> bool:
    """Whether an exception type known only by name (from a worker's traceback text) is an expected one."""
    import builtins

    builtin = getattr(builtins, type_name, None)
    if isinstance(builtin, type) and issubclass(builtin, BaseException):
        return _is_expected(builtin)
    return type_name.endswith("Error") and type_name not in dir(builtins)  # ccnet's own error types


def _worker_message(text: str) -> str | None:
    """The original exception of a DataLoader worker's re-raised message, without the module path of its
    type for expected errors (``ccnet.data.files.DatasetError: image x.png ...`` -> ``image x.png ...``);
    None if ``text`` is not such a message."""
    head, found, tail = text.partition(_WORKER_TRACEBACK)
    if not found:
        return None
    # A chained exception ("raise ... from error") shows its cause first: the error is the last traceback.
    last = tail.rsplit("Traceback (most recent call last):", 1)[-1]
    lines = last.splitlines()
    # The frames are indented; the first unindented line after them is "module.Type: message".
    start = next((i for i, line in enumerate(lines) if line and not line[0].isspace()), None)
    if start is None:
        return head.strip() or None
    type_path, sep, message = "\n".join(lines[start:]).partition(": ")
    type_name = type_path.rsplit(".", 1)[-1]
    if not sep:
        return type_name
    return message if _is_expected_name(type_name) else f"{type_name}: {message}"


def error_message(error: BaseException, *, name_unexpected: bool = True) -> str:
    """One line describing ``error`` for the user: its message, or for a DataLoader worker's re-raised error
    the original message only. With ``name_unexpected``, errors not written for users (neither ccnet's
    ValueError / TrainingError types nor OSError) are shown as ``Type: message``: "division by zero" alone
    says nothing."""
    text = str(error)
    worker = _worker_message(text)
    if worker is not None:
        text = worker
    elif name_unexpected and not _is_expected(type(error)):
        text = f"{type(error).__name__}: {text}" if text else type(error).__name__
    # One line whatever the message: a list of bad files becomes "a; b; c".
    return "; ".join(line.strip() for line in text.splitlines() if line.strip()) or type(error).__name__


def error_exit_code(error: BaseException) -> int:
    """2 for usage / config errors (``ConfigError``), 1 for everything else (bad data, faults)."""
    if any(cls.__name__ == "ConfigError" for cls in type(error).__mro__):
        return 2
    text = str(error)
    if _WORKER_TRACEBACK in text and "ConfigError" in text.partition(_WORKER_TRACEBACK)[2]:
        return 2
    return 1


def weights_command_exit_code(error: BaseException) -> int:
    """The exit code of a setup error of ``eval`` / ``predict`` / ``export``: 1 for bad data and faults (an
    unreadable weights file, a failed download, an I/O error), 2 for what the user asked wrongly (a config
    key or argument, a missing file or dataset folder, weights that do not fit the model or the dataset, an
    output path in the way). A corrupt image met while running is a data error (1) of its own."""
    from ccnet.models.weights import WeightsDownloadError, WeightsFileError

    if isinstance(error, (WeightsFileError, WeightsDownloadError)):
        return 1
    return 2 if isinstance(error, (ValueError, FileNotFoundError)) else 1


def fail(prog: str, error: BaseException | str, code: int = 2, *, unexpected: bool = False) -> int:
    """Print ``error`` as the one-line command error on every rank (a failing worker stays visible) and
    return ``code``. Under ``--debug`` the error's traceback is printed first.

    A command that catches an error vouches for its message; ``unexpected=True`` (the top-level handler of
    :func:`ccnet.cli.main`) names the type of errors not written for users.
    """
    if debug_enabled() and isinstance(error, BaseException) and error.__traceback__ is not None:
        traceback.print_exception(error)
    message = error if isinstance(error, str) else error_message(error, name_unexpected=unexpected)
    print(f"{prog}: error: {message}", file=sys.stderr, flush=True)
    return code
