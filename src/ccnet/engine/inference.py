"""Inference on raw images: preprocessing, whole-image or sliding-window, multi-scale + flip, batching.

:class:`Segmenter` takes uint8 RGB images (numpy (H, W, 3), PIL, tensors (3, H, W) or (H, W, 3), file
paths, or a list of them, any sizes) and returns per-pixel labels (H, W) int64 at each image's own size,
optionally with class probabilities (K, H, W). For video models (those with a ``clip_length``, see
:mod:`ccnet.models.video`) each input is a clip of frames ((T, 3, H, W) / (T, H, W, 3) uint8, or a list of
frames) and the result holds every frame, (T, H, W), or the centre frame only, (H, W), as the model predicts.
For each image or clip (mmsegmentation's test protocol):

1. normalise ``(pixel - mean) / std`` (channels reversed first for BGR models);
2. for each scale s: bilinear resize by ``s`` x the keep-ratio ``test_scale`` factor; for each flip:
   logits of the whole image, or of a sliding window (tiles of ``crop_size`` every ``stride``, logits of
   overlapping tiles averaged; images smaller than the crop are zero-padded in normalised space, i.e. with
   the mean colour, and the padding is cut off);
3. logits are flipped back (on the mirrored pass the channels of left/right classes are swapped too,
   ``flip_pairs``: the mirror image of a left arm is a right arm), resized bilinearly to the original size
   (the model's ``align_corners``) and turned into softmax probabilities; **probabilities are averaged**
   over scales and flips (as mmseg's aug_test does), labels are their argmax.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from ccnet.data.meta import check_flip_pairs, flip_pairs_for_classes, flip_permutation
from ccnet.preprocess import IMAGENET_RGB, Preprocess

__all__ = ["Prediction", "Segmenter", "predict", "to_clip_tensor", "to_image_tensor"]

AUTO = "auto"
ImageLike = np.ndarray | Image.Image | Tensor | str | os.PathLike


class Prediction(NamedTuple):
    """``labels`` (H, W) int64 and ``probs`` (K, H, W) float32, on the CPU ((T, H, W) and (T, K, H, W) for
    the clips of a video model that predicts every frame)."""

    labels: Tensor
    probs: Tensor


def to_image_tensor(image: ImageLike) -> Tensor:
    """A uint8 RGB image as a (3, H, W) uint8 tensor; clear errors for other dtypes and shapes.

    Accepts numpy (H, W, 3) uint8, PIL images (converted to RGB), uint8 tensors (3, H, W) or (H, W, 3),
    and paths of image files.
    """
    if isinstance(image, (str, os.PathLike)):
        with Image.open(image) as opened:
            image = opened.convert("RGB")
    if isinstance(image, Image.Image):
        image = np.array(image.convert("RGB"))
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8:
            raise TypeError(f"image: expected a uint8 RGB array (0..255), got dtype {image.dtype}")
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"image: expected an (H, W, 3) RGB array, got shape {image.shape}")
        image = np.ascontiguousarray(image) if image.flags.writeable else image.copy()
        return torch.from_numpy(image).permute(2, 0, 1)
    if isinstance(image, Tensor):
        if image.dtype != torch.uint8:
            raise TypeError(f"image: expected a uint8 RGB tensor (0..255), got dtype {image.dtype}")
        if image.dim() == 3 and image.shape[0] == 3:
            return image
        if image.dim() == 3 and image.shape[2] == 3:
            return image.permute(2, 0, 1)
        raise ValueError(
            f"image: expected a (3, H, W) or (H, W, 3) RGB tensor, got shape {tuple(image.shape)}"
        )
    raise TypeError(
        f"image: expected a numpy array, PIL image, tensor or file path, got {type(image).__name__}"
    )


def to_clip_tensor(clip: np.ndarray | Tensor | Sequence[ImageLike]) -> Tensor:
    """A clip of uint8 RGB frames as a (T, 3, H, W) uint8 tensor.

    Accepts a (T, 3, H, W) or (T, H, W, 3) uint8 tensor or array, or a sequence of frames in any form
    :func:`to_image_tensor` takes; all frames must have the same size.
    """
    if isinstance(clip, (np.ndarray, Tensor)):
        if clip.ndim != 4:
            raise ValueError(
                f"clip: expected (T, 3, H, W) or (T, H, W, 3) uint8 frames, got shape {tuple(clip.shape)}"
            )
        frames = [to_image_tensor(frame) for frame in clip]
    elif isinstance(clip, Sequence) and not isinstance(clip, str) and len(clip) > 0:
        frames = [to_image_tensor(frame) for frame in clip]
    else:
        raise TypeError(f"clip: expected a 4-D tensor/array or a non-empty list of frames, got {clip!r}")
    sizes = sorted({tuple(frame.shape[1:]) for frame in frames})
    if len(sizes) > 1:
        raise ValueError(f"clip: all frames must have the same size, got (H, W) sizes {sizes}")
    return torch.stack(frames)


def _interpolate(x: Tensor, size: Sequence[int], align_corners: bool | None) -> Tensor:
    """Bilinear resize of the last two dims of (..., C, h, w) to ``size`` (frames of clips included)."""
    flat = x.reshape(-1, *x.shape[-3:])
    out = F.interpolate(flat, size=tuple(size), mode="bilinear", align_corners=align_corners)
    return out.reshape(*x.shape[:-2], *out.shape[-2:])


def _logits_of(output: Any) -> Tensor:
    """The logits tensor of a model output: a tensor, an object with ``.out`` or a mapping with "out"."""
    if isinstance(output, Tensor):
        return output
    if isinstance(output, Mapping):
        return output["out"]
    return output.out


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _pair(value: int | Sequence[int], name: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or min(pair) < 1:
        raise ValueError(f"{name}: expected a positive int or (h, w), got {value!r}")
    return int(pair[0]), int(pair[1])


class Segmenter:
    """Runs a segmentation model on raw images (see the module docstring for the protocol).

    Arguments left at ``"auto"`` come from the model's zoo entry (``model.pretrained_cfg``) when it has one,
    else from the generic defaults in brackets.

    Args:
        model: maps (B, 3, h, w) normalised images to logits (B, K, h', w') (a tensor, or an output with
            ``.out`` / ``["out"]``); its train/eval mode is restored after each call. A video model (one with
            a ``clip_length`` attribute) maps clips (B, T, 3, h, w) to (B, T, K, h', w') or, predicting the
            centre frame only, (B, K, h', w').
        mode: ``"whole"`` or ``"slide"`` [whole].
        crop_size: sliding-window tile (h, w) [required for slide without a zoo entry].
        stride: sliding-window step (h, w) [about 2/3 of the crop].
        test_scale: keep-ratio resize before inference: the image is scaled by
            ``min(max(test_scale) / long edge, min(test_scale) / short edge)``, e.g. (2048, 512); None = no
            resize [None].
        scales: extra scale factors on top of ``test_scale``, e.g. (0.5, 0.75, 1.0, 1.25, 1.5, 1.75).
        flip: also run on the horizontally flipped images.
        flip_pairs: ``(a, b)`` class ids that trade places in a mirror image (the dataset's
            ``meta.flip_pairs``, e.g. LIP's left/right arm, leg and shoe); the mirrored pass's logit
            channels ``a`` and ``b`` are swapped before averaging. [``model.flip_pairs`` if the model has one,
            else the pairs of the known dataset whose class names equal ``model.classes`` (an ONNX file's
            metadata), else none]. Pass the dataset's pairs explicitly when scoring on a dataset.
        mean, std, bgr: input normalisation [``model.preprocess``, else ImageNet RGB statistics].
        batch_size: images or clips (or sliding-window tiles) per forward pass.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        mode: str = AUTO,
        crop_size: int | Sequence[int] | str | None = AUTO,
        stride: int | Sequence[int] | str | None = AUTO,
        test_scale: Sequence[int] | str | None = AUTO,
        scales: Sequence[float] = (1.0,),
        flip: bool = False,
        flip_pairs: Sequence[Sequence[int]] | str = AUTO,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        bgr: bool | None = None,
        batch_size: int = 4,
    ) -> None:
        cfg = getattr(model, "pretrained_cfg", None)
        preprocess = getattr(model, "preprocess", None) or IMAGENET_RGB
        self.model = model
        self.video = getattr(model, "clip_length", None) is not None
        self.mode = (cfg.test_mode if cfg else "whole") if mode == AUTO else mode
        if self.mode not in ("whole", "slide"):
            raise ValueError(f"mode: expected 'whole' or 'slide', got {self.mode!r}")
        test_scale = (cfg.test_scale if cfg else None) if test_scale == AUTO else test_scale
        self.test_scale = None if test_scale is None else _pair(test_scale, "test_scale")
        self.crop_size: tuple[int, int] | None = None
        self.stride: tuple[int, int] | None = None
        if self.mode == "slide":
            crop_size = (cfg.crop_size if cfg else None) if crop_size == AUTO else crop_size
            if crop_size is None:
                raise ValueError("mode='slide' needs crop_size (the model has no zoo entry to take it from)")
            self.crop_size = _pair(crop_size, "crop_size")
            if stride == AUTO:
                stride = cfg.test_stride if cfg and cfg.test_stride else None
            if stride is None:
                stride = tuple(max(1, (2 * c + 2) // 3) for c in self.crop_size)
            self.stride = _pair(stride, "stride")
        self.scales = tuple(float(s) for s in scales)
        if not self.scales or min(self.scales) <= 0:
            raise ValueError(f"scales: expected positive factors, got {scales!r}")
        self.flip = flip
        if flip_pairs == AUTO:
            own = getattr(model, "flip_pairs", None)
            flip_pairs = own if own is not None else flip_pairs_for_classes(getattr(model, "classes", None))
        num_classes = getattr(model, "num_classes", None)
        self.flip_pairs = check_flip_pairs(
            flip_pairs, num_classes if isinstance(num_classes, int) else 256, "Segmenter(flip_pairs=...)"
        )
        self.preprocess = Preprocess(
            mean=tuple(preprocess.mean if mean is None else mean),
            std=tuple(preprocess.std if std is None else std),
            bgr=preprocess.bgr if bgr is None else bgr,
        )
        if batch_size < 1:
            raise ValueError(f"batch_size: expected >= 1, got {batch_size}")
        self.batch_size = batch_size
        self.align_corners = bool(getattr(model, "align_corners", False))

    def __repr__(self) -> str:
        fields = (
            "mode", "crop_size", "stride", "test_scale", "scales", "flip", "flip_pairs", "mean", "std", "bgr"
        )  # fmt: skip
        return f"Segmenter({', '.join(f'{f}={getattr(self, f)!r}' for f in fields)})"

    def predict(
        self, images: ImageLike | Sequence[ImageLike], return_probs: bool = False
    ) -> Tensor | Prediction | list[Tensor] | list[Prediction]:
        """Segment one image or a list of images (same-size images are batched together).

        For a video model: one clip (a 4-D tensor or array, see :func:`to_clip_tensor`) or a list of clips
        (each a 4-D tensor/array or a list of frames).

        Returns:
            for one image, labels (H, W) int64, or with ``return_probs`` a :class:`Prediction` that also
            holds ``probs`` (K, H, W) float32; for a list, a list of those in the same order. On the CPU.
            Clips give (T, H, W) labels and (T, K, H, W) probabilities when the model predicts every frame.
        """
        if self.video:
            single = isinstance(images, (np.ndarray, Tensor))
            tensors = [to_clip_tensor(clip) for clip in ([images] if single else images)]
        else:
            single = not isinstance(images, (list, tuple))
            tensors = [to_image_tensor(image) for image in ([images] if single else images)]
        by_size: dict[tuple[int, ...], list[int]] = {}
        for index, tensor in enumerate(tensors):
            by_size.setdefault(tuple(tensor.shape), []).append(index)
        results: list[Any] = [None] * len(tensors)
        with torch.inference_mode(), _eval_mode(self.model):
            for indices in by_size.values():
                for start in range(0, len(indices), self.batch_size):
                    chunk = indices[start : start + self.batch_size]
                    probs = self._probabilities(torch.stack([tensors[i] for i in chunk])).cpu()
                    labels = probs.argmax(dim=-3)
                    for j, index in enumerate(chunk):
                        results[index] = Prediction(labels[j], probs[j]) if return_probs else labels[j]
        return results[0] if single else results

    def _device_dtype(self) -> tuple[torch.device, torch.dtype]:
        tensor = next(self.model.parameters(), None)
        if tensor is None:
            tensor = next(self.model.buffers(), None)
        if tensor is None or not tensor.is_floating_point():
            return torch.device("cpu"), torch.float32
        return tensor.device, tensor.dtype

    def _normalise(self, batch: Tensor) -> Tensor:
        """(B, [T,] 3, H, W) uint8 RGB -> the same shape, float normalised, in the model's channel order."""
        device, dtype = self._device_dtype()
        return self.preprocess(batch.to(device=device, dtype=torch.float32)).to(dtype)

    @property
    def mean(self) -> tuple[float, float, float]:
        return self.preprocess.mean

    @property
    def std(self) -> tuple[float, float, float]:
        return self.preprocess.std

    @property
    def bgr(self) -> bool:
        return self.preprocess.bgr

    def _resize_factor(self, height: int, width: int) -> float:
        if self.test_scale is None:
            return 1.0
        return min(max(self.test_scale) / max(height, width), min(self.test_scale) / min(height, width))

    def _probabilities(self, batch: Tensor) -> Tensor:
        """(B, [T,] 3, H, W) uint8 -> (B, [T,] K, H, W) float32 probabilities averaged over scales and flips
        (no T for a video model predicting the centre frame)."""
        x = self._normalise(batch)
        H, W = x.shape[-2:]
        base = self._resize_factor(H, W)
        total = None
        passes = 0
        for scale in self.scales:
            size = (int(H * base * scale + 0.5), int(W * base * scale + 0.5))
            scaled = x if size == (H, W) else _interpolate(x, size, align_corners=False)
            for flipped in (False, True) if self.flip else (False,):
                inputs = scaled.flip(-1) if flipped else scaled
                logits = self._slide(inputs) if self.mode == "slide" else self._forward(inputs)
                if flipped:
                    logits = self._unmirror(logits)
                probs = self._resize(logits.float(), (H, W)).softmax(dim=-3)  # (B, [T,] K, H, W)
                total = probs if total is None else total + probs
                passes += 1
        return total / passes

    def _unmirror(self, logits: Tensor) -> Tensor:
        """Logits (B, [T,] K, h, w) of mirrored images -> those of the images: flipped back, and the
        channels of each flip pair swapped (the mirror image's "left arm" is the image's right arm)."""
        logits = logits.flip(-1)
        if not self.flip_pairs:
            return logits
        perm = flip_permutation(logits.shape[-3], self.flip_pairs)  # ValueError if an id is >= K
        return logits.index_select(-3, torch.tensor(perm, device=logits.device))

    def _resize(self, logits: Tensor, size: tuple[int, int]) -> Tensor:
        if tuple(logits.shape[-2:]) == tuple(size):
            return logits
        return _interpolate(logits, size, align_corners=self.align_corners)

    def _forward(self, x: Tensor) -> Tensor:
        """(B, [T,] 3, h, w) -> logits (B, [T,] K, h, w)."""
        return self._resize(_logits_of(self.model(x)), tuple(x.shape[-2:]))

    def _slide(self, x: Tensor) -> Tensor:
        """Sliding-window logits (B, [T,] K, h, w): ``crop_size`` tiles every ``stride``, overlaps averaged"""
        B, H, W = x.shape[0], *x.shape[-2:]
        (crop_h, crop_w), (stride_h, stride_w) = self.crop_size, self.stride
        x = F.pad(x, (0, max(crop_w - W, 0), 0, max(crop_h - H, 0)))  # zeros = the mean colour
        Hp, Wp = x.shape[-2:]
        rows = max(Hp - crop_h + stride_h - 1, 0) // stride_h + 1
        cols = max(Wp - crop_w + stride_w - 1, 0) // stride_w + 1
        windows = []
        for r in range(rows):
            for c in range(cols):
                y2, x2 = min(r * stride_h + crop_h, Hp), min(c * stride_w + crop_w, Wp)
                windows.append((y2 - crop_h, x2 - crop_w, y2, x2))  # the last row/column ends at the border
        total = count = None
        per_pass = max(1, self.batch_size // B)  # windows per forward pass
        for start in range(0, len(windows), per_pass):
            group = windows[start : start + per_pass]
            tiles = torch.cat([x[..., y1:y2, x1:x2] for y1, x1, y2, x2 in group])  # (n * B, [T,] 3, ch, cw)
            logits = self._forward(tiles).float()  # (n * B, [T,] K, ch, cw)
            if total is None:
                total = logits.new_zeros(B, *logits.shape[1:-2], Hp, Wp)
                count = logits.new_zeros(Hp, Wp)
            for (y1, x1, y2, x2), tile in zip(group, logits.split(B), strict=True):
                total[..., y1:y2, x1:x2] += tile
                count[y1:y2, x1:x2] += 1
        return (total / count)[..., :H, :W]


def predict(
    model: nn.Module, images: ImageLike | Sequence[ImageLike], *, return_probs: bool = False, **options: Any
) -> Tensor | Prediction | list[Tensor] | list[Prediction]:
    """``Segmenter(model, **options).predict(images, return_probs)`` in one call."""
    return Segmenter(model, **options).predict(images, return_probs=return_probs)
