"""H.264 in yuv420p needs even frame sizes: VideoWriter pads an odd height with one more row and an odd
width with one more column (each on its own axis), repeating the last one. Oracle: the sizes by hand, and
the padded row / column equal to its neighbour in the decoded frames."""

from __future__ import annotations

import numpy as np
import pytest

from ccnet.engine.video_io import VideoWriter, probe_video, read_video

pytest.importorskip("av")


@pytest.mark.parametrize(("height", "width", "even"), [(33, 48, (34, 48)), (32, 47, (32, 48))])
def test_odd_side_is_padded_on_its_own_axis(tmp_path, height, width, even):
    frame = np.zeros((height, width, 3), dtype=np.uint8)
    frame[:, : width // 2] = 200  # left half bright: the last row / column continues the frame's edge
    path = tmp_path / "odd.mp4"
    with VideoWriter(path, fps=10) as writer:
        for _ in range(2):
            writer.write(frame)
    info = probe_video(path)
    assert (info.height, info.width, info.frames) == (*even, 2)
    decoded = next(iter(read_video(path))).astype(np.int32)
    assert decoded.shape == (*even, 3)
    # the added row / column repeats the last one (lossy codec: compare, not bit-exact)
    assert (
        np.abs(decoded[-1] - decoded[-2]).max() <= 12 and np.abs(decoded[:, -1] - decoded[:, -2]).max() <= 12
    )
