"""``ccnet app [--weights W | --model NAME] [--port P]``: a local web page (Gradio, on 127.0.0.1) to segment
images and videos and explore the criss-cross attention of the loaded model by clicking a pixel.

``--weights``: a run folder of ``ccnet train`` (its ``model.safetensors``, else its latest checkpoint), a
weights file or a zoo name (downloaded into the torch hub cache; offline, a clear error). ``--model``: the
architecture when the weights do not name it, or, without weights, an untrained model of that architecture.
Neither: ``ccnet_tiny`` with random weights and the built-in context task's classes (the page says so).
Images whose long side exceeds ``--max-side`` are shrunk before segmentation and display.
Needs the ``app`` extra (``pip install 'ccnet[app]'``: gradio, PyAV).
"""

from __future__ import annotations

import argparse

from ccnet.cli.common import fail

PROG = "ccnet app"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", default=None, help="run folder, weights file or zoo name")
    parser.add_argument(
        "--model", default=None, help="model name (default: named by the weights; ccnet_tiny)"
    )
    parser.add_argument(
        "--port", type=int, default=None, help="port on 127.0.0.1 (default: first free from 7860)"
    )
    parser.add_argument(
        "--max-side", type=int, default=1024, help="longer image sides are shrunk to this many pixels"
    )


def run(args: argparse.Namespace) -> int:
    import os

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    if args.port is not None and not 1 <= args.port <= 65535:
        return fail(PROG, f"--port {args.port}: expected 1..65535", 2)
    if args.max_side < 16:
        return fail(PROG, f"--max-side {args.max_side}: expected at least 16 pixels", 2)
    import importlib.util

    for package in ("gradio", "av"):  # found, not imported: gradio takes seconds to import
        if importlib.util.find_spec(package) is None:
            return fail(PROG, f"{package} is missing: install the app extra (pip install 'ccnet[app]')", 2)
    from ccnet.app.models import WeightsError, load_app_model
    from ccnet.app.page import AppSession, launch

    try:
        app_model = load_app_model(args.weights, args.model)
    except WeightsError as err:
        return fail(PROG, err, 2)
    print(f"{PROG}: {app_model.description}", flush=True)
    try:
        launch(AppSession(app_model, max_side=args.max_side), args.port)
    except OSError as err:  # the port is taken
        return fail(PROG, f"cannot serve on 127.0.0.1:{args.port}: {err}", 1)
    return 0
