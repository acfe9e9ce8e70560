"""The model as the training loop runs it: with the loss modules that have parameters, video logits folded
into a batch of images for the per-pixel losses, and :class:`InstanceTask`: what differs for instance
segmentation models (Mask R-CNN) in the one training loop."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ccnet.clips import centre_index
from ccnet.losses import CategoryConsistentLoss

__all__ = ["InstanceTask", "ModelWithLossModules", "frames_as_images"]


class ModelWithLossModules(nn.Module):
    """The model plus the loss modules that have parameters (the category consistent loss's projection), as
    one module so that DDP synchronises all of them. ``forward`` -> (SegmentationOutput, embeddings or None).

    The category consistent loss needs the output of the model's context module (``model.head.context``,
    RCCA for CCNet); a forward hook keeps it for the duration of one forward pass. A video model's context
    (B, C, T, h, w) is taken frame by frame, like its logits (see :func:`frames_as_images`).
    """

    def __init__(self, model: nn.Module, ccl: CategoryConsistentLoss | None) -> None:
        super().__init__()
        self.model, self.ccl = model, ccl
        self._context: Tensor | None = None
        if ccl is not None:
            model.head.context.register_forward_hook(self._keep_context)

    def _keep_context(self, module: nn.Module, inputs: Any, output: Tensor) -> None:
        if module.training:  # not during validation, which runs the model in eval mode
            self._context = output

    def forward(self, x: Any, *more: Any) -> tuple[Any, Tensor | None]:
        """``x``: images (B, C, H, W) (or clips); instance models also take ``more`` = (targets,)."""
        output = self.model(x, *more)
        if self.ccl is None:
            return output, None
        context, self._context = self._context, None
        if context.dim() == 5:  # (B', C, T', h, w), T' frames per attention window
            if output.out.dim() == 4:  # the model predicts the centre frame of each clip
                context = context[:, :, centre_index(context.shape[2])]
            else:
                context = context.transpose(1, 2).flatten(0, 1)  # (B' T', C, h, w) = (B T, C, h, w)
        return output, self.ccl.embed(context, tuple(x.shape[-2:]))


def frames_as_images(out: Tensor, aux: Tensor | None, target: Tensor) -> tuple[Tensor, Tensor | None, Tensor]:
    """Logits and labels of clips as a batch of images, for the per-pixel losses.

    Video models give (B, T, K, H, W) for targets (B, T, H, W): frames fold into the batch; predicting only
    the centre frame, (B, K, H, W): the target's centre frame is taken. Images pass unchanged.
    """
    if target.dim() == 4 and out.dim() == 5:
        aux = aux.flatten(0, 1) if aux is not None else None
        return out.flatten(0, 1), aux, target.flatten(0, 1)
    if target.dim() == 4 and out.dim() == 4:
        return out, aux, target[:, centre_index(target.shape[1])]
    return out, aux, target


class InstanceTask:
    """What the training loop does differently for instance segmentation models (torchvision's Mask R-CNN):
    batches are (list of (3, H, W) images, list of target dicts), the loss is the sum of the loss dict the
    model returns in training mode (each term logged), validation is COCOeval's (box and mask AP, the best
    checkpoint by mask AP), and the detector resizes images itself (``data.min_size`` / ``data.max_size``).
    """

    @staticmethod
    def collate(batch: list[Any]) -> tuple[list[Tensor], list[dict[str, Any]]]:
        from ccnet.data.coco import collate_instances

        return collate_instances(batch)

    @staticmethod
    def size_overrides(data: Any) -> dict[str, Any]:
        """The model options the data config sets: the detector's resize (``min_size``, ``max_size``)."""
        sizes: dict[str, Any] = {}
        if data.min_size is not None:
            sizes["min_size"] = tuple(data.min_size) if len(data.min_size) > 1 else int(data.min_size[0])
        if data.max_size is not None:
            sizes["max_size"] = int(data.max_size)
        return sizes

    @staticmethod
    def to_device(
        batch: tuple[list[Tensor], list[dict[str, Any]]], device: torch.device
    ) -> tuple[list[Tensor], list[dict[str, Any]]]:
        images, targets = batch
        images = [image.to(device, non_blocking=True).as_subclass(Tensor) for image in images]
        targets = [
            {
                k: v.to(device, non_blocking=True).as_subclass(Tensor) if isinstance(v, Tensor) else v
                for k, v in target.items()
            }
            for target in targets
        ]
        return images, targets

    @staticmethod
    def losses(loss_dict: dict[str, Tensor]) -> dict[str, Tensor]:
        """``{"loss": the sum, **each term}`` (the terms in the model's order)."""
        return {"loss": sum(loss_dict.values()), **loss_dict}

    @staticmethod
    def validate(model: nn.Module, dataset: Any, ctx: Any, *, progress: bool, num_workers: int = 0) -> Any:
        """COCOeval on ``dataset`` by the main process (COCOeval is not sharded; the other processes wait);
        every process gets the result, so that all agree on the best checkpoint."""
        import torch.distributed as dist

        from ccnet.engine.coco_eval import evaluate_instances

        metrics = None
        if ctx.is_main:
            # the evaluation's DataLoader draws its seed from the global generator: a validation must not
            # shift the training's random stream (a resumed run would differ from an uninterrupted one)
            devices = [ctx.device.index or 0] if ctx.device.type == "cuda" else []
            with torch.random.fork_rng(devices=devices):
                metrics = evaluate_instances(model, dataset, progress=progress, num_workers=num_workers)
        if ctx.distributed:
            box = [metrics]
            dist.broadcast_object_list(box, src=0)
            metrics = box[0]
        return metrics

    @staticmethod
    def score(metrics: Any) -> float:
        """The number the best checkpoint is chosen by: mask AP (-inf when COCOeval has none)."""
        value = metrics.mask_ap
        return -math.inf if math.isnan(value) else float(value)

    @staticmethod
    def scalars(metrics: Any) -> dict[str, float]:
        values = {f"bbox_{k}": v for k, v in metrics.bbox.items()}
        values.update({f"segm_{k}": v for k, v in (metrics.segm or {}).items()})
        return {k: v for k, v in values.items() if not math.isnan(v)}

    @staticmethod
    def write_reports(metrics: Any, directory: Path, *, title: str) -> tuple[Path, Path]:
        """``metrics.json`` (COCOeval's numbers as fractions) and ``metrics.md`` (the table in percent)."""
        json_path, md_path = directory / "metrics.json", directory / "metrics.md"
        json_path.write_text(json.dumps({"title": title, **metrics.to_dict()}, indent=2) + "\n")
        md_path.write_text(f"# {title}\n\n```\n{metrics.format_table()}\n```\n")
        return json_path, md_path
