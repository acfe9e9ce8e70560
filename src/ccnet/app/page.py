"""The Gradio page of ``ccnet app``: widgets wired to :mod:`ccnet.app.handlers`.

Event functions live on :class:`AppSession` and return plain values (pictures as arrays, messages as
markdown), so tests call them without a browser. Every problem becomes a message on the page: the
handlers raise :class:`~ccnet.app.handlers.AppError`, the events turn it into the status line, and the
server keeps serving. Nothing here reaches the internet: analytics are off, no share link, system fonts.
"""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np

from ccnet.app.handlers import (
    DEFAULT_MAX_SIDE,
    AppError,
    Segmentation,
    attention_views,
    label_picture,
    legend_html,
    legend_rows,
    load_image,
    overlay_picture,
    sample_images,
    save_downloads,
    segment,
    segment_video,
    shown_image,
)
from ccnet.app.models import AppModel, WeightsError, backends, load_app_model

__all__ = ["AppSession", "build_page", "launch"]

TRAIN_HINT = (
    "Untrained weights: the labels mean nothing yet, the attention maps show the mechanism. Train the tiny "
    "model on the built-in task in about 2 minutes with `ccnet train`, then `ccnet app --weights "
    "runs/default/<time>`."
)


def _error(err: BaseException) -> str:
    return f"**Error:** {err}"


class AppSession:
    """The server's state: the loaded model (shared by all browser tabs; Load swaps it), the samples and a
    folder for the files the page offers for download."""

    def __init__(self, app_model: AppModel, *, max_side: int = DEFAULT_MAX_SIDE, out_dir: str | None = None):
        self.app_model = app_model
        self.max_side = max_side
        self.samples = dict(sample_images())
        # under the temp folder: Gradio serves files returned from there
        self.out_dir = Path(out_dir or tempfile.mkdtemp(prefix="ccnet-app-"))
        self._count = 0
        self._lock = threading.Lock()

    def _next_stem(self, name: str) -> str:
        with self._lock:
            self._count += 1
            return f"{self._count:04d}_{Path(name).stem or 'image'}"

    def model_markdown(self) -> str:
        m = self.app_model
        text = f"**Model:** {m.description}"
        if not m.trained:
            text += f"\n\n⚠️ {TRAIN_HINT}"
        if not m.has_attention:
            text += "\n\nThis model has no criss-cross attention: the attention explorer is off."
        return text

    # --- events -------------------------------------------------------------------------------------------
    def load_weights(self, weights: str, name: str) -> str:
        """Load other weights (run folder, file, zoo name) or an untrained architecture; the page's model
        line, or the error."""
        try:
            self.app_model = load_app_model(weights.strip() or None, name.strip() or None)
        except WeightsError as err:
            return _error(err) + "\n\n" + self.model_markdown().replace("**Model:**", "**Still using:**")
        return self.model_markdown()

    def segment_file(self, path: str | None, *options: Any) -> tuple[Any, ...]:
        try:
            image, note = load_image(path, self.max_side)
        except AppError as err:
            return self._failed(err)
        return self._segment(image, Path(path).name, note, *options)

    def segment_sample(self, name: str | None, *options: Any) -> tuple[Any, ...]:
        if not name:
            return self._failed(AppError("no image: upload an image file or pick a sample"))
        return self._segment(self.samples[name], name.replace(" ", "_"), "", *options)

    def segment_current(self, path: str | None, name: str | None, *options: Any) -> tuple[Any, ...]:
        """Segment again with the current options: the uploaded file, else the picked sample."""
        return self.segment_file(path, *options) if path else self.segment_sample(name, *options)

    def _segment(
        self,
        image: np.ndarray,
        name: str,
        note: str,
        mode: str,
        flip: bool,
        scales: str,
        crop: float,
        backend: str,
        alpha: float,
    ) -> tuple[Any, ...]:
        m = self.app_model
        try:
            result = segment(
                m, image, mode=mode, flip=flip, scales=scales, backend=backend, crop_size=int(crop), note=note
            )
        except AppError as err:
            return self._failed(err)
        height, width = image.shape[:2]
        status = f"Segmented {width}x{height} in {result.seconds * 1000:.0f} ms ({m.name}, {backend}, {mode}"
        status += ", flip" if flip else ""
        status += f", scales {scales})" + (f"; {note}" if note else "")
        state = {"segmentation": result, "stem": self._next_stem(name)}
        return (status, *self._pictures(state, alpha), shown_image(result), state)

    def _pictures(self, state: dict, alpha: float) -> tuple[Any, ...]:
        """overlay, label map, legend, label PNG file, overlay PNG file."""
        result: Segmentation = state["segmentation"]
        m = self.app_model
        label_file, overlay_file = save_downloads(result, m.palette, alpha, self.out_dir, state["stem"])
        legend = legend_html(legend_rows(result, m.classes, m.palette))
        return (
            overlay_picture(result, m.palette, alpha),
            label_picture(result, m.palette),
            legend,
            str(label_file),
            str(overlay_file),
        )

    def _failed(self, err: BaseException) -> tuple[Any, ...]:
        return (_error(err), None, None, "", None, None, None, None)

    def change_opacity(self, state: dict | None, alpha: float) -> tuple[Any, ...]:
        """overlay and its download at the new opacity (label map and legend unchanged)."""
        if not state:
            return None, None
        pictures = self._pictures(state, alpha)
        return pictures[0], pictures[4]

    def click(self, state: dict | None, x: int, y: int) -> tuple[Any, ...]:
        """(loop 1, loop 2, combined pictures, message) for a click at shown-image pixel (x, y)."""
        if not state:
            return None, None, None, _error("segment an image first")
        try:
            views = attention_views(self.app_model, state["segmentation"], x, y)
        except AppError as err:
            return None, None, None, _error(err)
        (row, column), (h, w) = views.cell, views.grid
        text = f"Feature cell row {row}, column {column} of {h}x{w} (clicked pixel x={x}, y={y})."
        if views.loop2 is None:
            text += " The model has one loop: no loop 2 or combined map."
        return views.loop1, views.loop2, views.combined, text

    def video(self, path: str | None, backend: str, alpha: float) -> tuple[Any, str]:
        try:
            folder = tempfile.mkdtemp(dir=self.out_dir)
            video, frames, seconds = segment_video(
                self.app_model, path, folder, alpha=alpha, backend=backend, progress=True
            )
        except AppError as err:
            return None, _error(err)
        return str(video), f"{frames} frames in {seconds:.1f} s ({frames / max(seconds, 1e-9):.1f} frames/s)"


def build_page(session: AppSession):  # -> gr.Blocks
    """The page's widgets and events (see the module docstring)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # read when gradio is imported
    import gradio as gr

    with gr.Blocks(title="ccnet app", analytics_enabled=False) as page:
        gr.Markdown("# CCNet: segmentation and criss-cross attention")
        model_line = gr.Markdown(session.model_markdown(), elem_id="model-line")
        with gr.Accordion("Weights", open=False), gr.Row():
            weights_box = gr.Textbox(label="weights: run folder, weights file or zoo name", scale=3)
            name_box = gr.Textbox(label="model name (when the weights do not name it)", scale=2)
            load_button = gr.Button("Load", scale=1)
        with gr.Tab("Image"):
            with gr.Row():
                with gr.Column(scale=1):
                    upload = gr.File(label="image file", type="filepath", elem_id="image-upload")
                    sample = gr.Dropdown(
                        list(session.samples),
                        value=None,
                        label="or a sample of the built-in task",
                        elem_id="sample",
                    )
                    mode = gr.Radio(["whole", "slide"], value="whole", label="inference mode")
                    crop = gr.Number(512, label="slide: tile size (px)", precision=0)
                    scales = gr.Textbox("1.0", label="scales (e.g. 0.75 1.0 1.25)")
                    flip = gr.Checkbox(False, label="flip (average with the mirrored image)")
                    backend = gr.Radio(list(backends()), value="torch", label="backend")
                    alpha = gr.Slider(0.0, 1.0, value=0.5, step=0.05, label="overlay opacity")
                    again = gr.Button("Segment with these options", variant="primary")
                with gr.Column(scale=2):
                    status = gr.Markdown("Upload an image or pick a sample.", elem_id="status")
                    with gr.Row():
                        overlay = gr.Image(
                            label="overlay", format="png", interactive=False, elem_id="overlay"
                        )
                        labels = gr.Image(
                            label="label map", format="png", interactive=False, elem_id="labels"
                        )
                    legend = gr.HTML(elem_id="legend")
                    with gr.Row():
                        label_download = gr.DownloadButton("label PNG (palette)", elem_id="download-labels")
                        overlay_download = gr.DownloadButton("overlay PNG", elem_id="download-overlay")
            gr.Markdown(
                "## Attention explorer\nClick a pixel of the image: the criss-cross weights of its feature "
                "cell in loop 1 (its row and column), in loop 2, and combined through both loops (how much "
                "each cell feeds the clicked one). Log colour scale, 6 decades; the cell is outlined."
            )
            with gr.Row():
                clickable = gr.Image(label="click a pixel", format="png", interactive=False, elem_id="click")
                loop1 = gr.Image(label="loop 1", format="png", interactive=False, elem_id="loop1")
                loop2 = gr.Image(label="loop 2", format="png", interactive=False, elem_id="loop2")
                combined = gr.Image(
                    label="combined (2 loops)", format="png", interactive=False, elem_id="combined"
                )
            cell = gr.Markdown(elem_id="cell")
        with gr.Tab("Video"), gr.Row():
            with gr.Column():
                video_in = gr.File(label="video file (.mp4 .avi .mov .mkv .webm)", type="filepath")
                video_button = gr.Button("Segment video", variant="primary")
            with gr.Column():
                video_out = gr.Video(label="overlay video", elem_id="video-out")
                video_status = gr.Markdown()
        state = gr.State(None)

        options = [mode, flip, scales, crop, backend, alpha]
        outputs = [status, overlay, labels, legend, label_download, overlay_download, clickable, state]
        upload.upload(session.segment_file, [upload, *options], outputs)
        sample.input(session.segment_sample, [sample, *options], outputs)
        again.click(session.segment_current, [upload, sample, *options], outputs)
        alpha.release(session.change_opacity, [state, alpha], [overlay, overlay_download])
        load_button.click(session.load_weights, [weights_box, name_box], model_line)

        def on_select(current: dict | None, event: gr.SelectData):
            x, y = event.index
            return session.click(current, int(x), int(y))

        # Gradio finds the event-data argument by its type; the string annotations of this module hide it
        on_select.__annotations__["event"] = gr.SelectData

        clickable.select(on_select, state, [loop1, loop2, combined, cell])

        track = gr.Progress(track_tqdm=True)  # the frames' tqdm bar, shown on the page

        def on_video(path: str | None, chosen_backend: str, opacity: float, progress=track):
            return session.video(path, chosen_backend, opacity)

        video_button.click(on_video, [video_in, backend, alpha], [video_out, video_status])
    return page


def launch(session: AppSession, port: int | None = None, *, block: bool = True):
    """Serve the page on 127.0.0.1:``port`` (None: Gradio picks a free one from 7860); no share link."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # read when gradio is imported
    import gradio as gr

    page = build_page(session)
    theme = gr.themes.Default(font=["system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])
    page.queue(default_concurrency_limit=1)  # one model on 2 cores: requests take turns
    return page.launch(
        server_name="127.0.0.1",
        server_port=port,
        share=False,
        inbrowser=False,
        prevent_thread_lock=not block,
        ssr_mode=False,
        show_error=True,
        quiet=False,
        theme=theme,
        allowed_paths=[str(session.out_dir)],
        footer_links=[],
    )
