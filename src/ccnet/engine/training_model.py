"""The model as the training loop runs it: with the loss modules that have parameters, and video logits
folded into a batch of images for the per-pixel losses."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from ccnet.clips import centre_index
from ccnet.losses import CategoryConsistentLoss

__all__ = ["ModelWithLossModules", "frames_as_images"]


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

    def forward(self, x: Tensor) -> tuple[Any, Tensor | None]:
        output = self.model(x)
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
