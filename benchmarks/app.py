"""``ccnet app`` and video prediction: startup time, per-image latency, and peak memory against video length.

    python benchmarks/app.py memory [--frames 150 600] [--size 96 128]
    python benchmarks/app.py latency [--models ccnet_tiny ccnet_r50_d8] [--size 512 512] [--repeats 5]
    python benchmarks/app.py startup

``memory``: per frame count, a fresh process decodes a generated video (a square moving on noise, H.264),
segments it with the untrained ``ccnet_tiny`` and writes the overlay MP4 (:func:`ccnet.engine.predict.
predict_video`); prints the process's peak RSS. Streaming means the peak does not grow with the length.
``latency``: seconds per image of the app's segmentation handler (whole image, torch backend, untrained
weights: the speed does not depend on them) and of the first attention click (one recorded forward pass).
``startup``: seconds from ``ccnet app`` to the first HTTP answer. Timings need a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _video_worker(frames: int, height: int, width: int) -> None:
    import numpy as np

    from ccnet.app.models import load_app_model
    from ccnet.engine.inference import Segmenter
    from ccnet.engine.predict import predict_video
    from ccnet.engine.video_io import VideoWriter

    folder = Path(tempfile.mkdtemp(prefix="ccnet-video-memory-"))
    rng = np.random.default_rng(0)
    with VideoWriter(folder / "clip.mp4", 25) as writer:
        for t in range(frames):
            frame = rng.integers(0, 60, (height, width, 3), dtype=np.uint8)
            left = (3 * t) % (width - 16)
            frame[height // 3 : height // 3 + 16, left : left + 16] = 230
            writer.write(frame)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    app_model = load_app_model()
    _, count = predict_video(
        Segmenter(app_model.model), folder / "clip.mp4", folder / "out", app_model.palette, progress=False
    )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"frames": count, "peak_rss_mib": peak / 1024, "rss_before_model_mib": before / 1024}))


def memory(args: argparse.Namespace) -> None:
    for frames in args.frames:
        result = subprocess.run(
            [sys.executable, __file__, "_video_worker", str(frames), *map(str, args.size)],
            capture_output=True,
            text=True,
            check=True,
        )
        print(result.stdout.strip().splitlines()[-1])


def latency(args: argparse.Namespace) -> None:
    import numpy as np

    from ccnet.app.handlers import attention_views, segment
    from ccnet.app.models import load_app_model

    image = np.random.default_rng(0).integers(0, 255, (*args.size, 3), dtype=np.uint8)
    for name in args.models:
        app_model = load_app_model(None, name)
        segment(app_model, image)  # warm-up
        times = []
        for _ in range(args.repeats):
            result = segment(app_model, image)
            times.append(result.seconds)
        start = time.perf_counter()
        attention_views(app_model, result, image.shape[1] // 2, image.shape[0] // 2)
        click = time.perf_counter() - start
        print(
            json.dumps(
                {
                    "model": name,
                    "size": args.size,
                    "segment_s_median": sorted(times)[len(times) // 2],
                    "first_click_s": click,
                }
            )
        )


def startup(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.app.browser import serving

    start = time.perf_counter()
    with serving(Path(tempfile.mkdtemp(prefix="ccnet-app-startup-"))):
        print(json.dumps({"startup_s": time.perf_counter() - start}))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_video_worker":
        _video_worker(*map(int, sys.argv[2:5]))
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="what", required=True)
    m = sub.add_parser("memory")
    m.add_argument("--frames", type=int, nargs="+", default=[150, 600])
    m.add_argument("--size", type=int, nargs=2, default=[96, 128], metavar=("H", "W"))
    lat = sub.add_parser("latency")
    lat.add_argument("--models", nargs="+", default=["ccnet_tiny", "ccnet_r50_d8"])
    lat.add_argument("--size", type=int, nargs=2, default=[512, 512], metavar=("H", "W"))
    lat.add_argument("--repeats", type=int, default=5)
    sub.add_parser("startup")
    args = parser.parse_args()
    {"memory": memory, "latency": latency, "startup": startup}[args.what](args)


if __name__ == "__main__":
    main()
