"""Training losses: cross-entropy with an ignore index, OHEM, and the category consistent loss (TPAMI).

Shapes: ``logits`` (B, K, H, W) float, ``target`` (B, H, W) int64 with ``ignore_index`` (255) for pixels
that carry no label. Everything runs on the tensors' device without host synchronisation (no ``.item()``,
no boolean indexing), so the hot path never waits for the GPU.

- :func:`cross_entropy`: mean over labelled pixels (PyTorch's and the CCNet authors' convention; a batch
  without any labelled pixel gives 0, not NaN).
- :class:`OhemCrossEntropy`: cross-entropy over the hard pixels only (the authors' ``OhemCrossEntropy2d`` and
  mmsegmentation's ``OHEMPixelSampler``).
- :class:`CategoryConsistentLoss`: variance, distance and regularisation terms on projected features.
- :func:`edge_target`, :func:`edge_class_weights`, :func:`balanced_edge_cross_entropy`: CE2P's edge loss
  (human parsing, :mod:`ccnet.models.ce2p`), with the edge ground truth computed from the labels.
- :class:`SegmentationLoss`: main head (CE or OHEM) + ``aux_weight`` x CE on the auxiliary head (+ the edge
  loss when the model's ``aux`` output also holds edge logits).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "CategoryConsistentLoss",
    "CategoryConsistentTerms",
    "OhemCrossEntropy",
    "SegmentationLoss",
    "balanced_edge_cross_entropy",
    "category_consistent_terms",
    "cross_entropy",
    "edge_class_weights",
    "edge_target",
    "ohem_mask",
]


def cross_entropy(logits: Tensor, target: Tensor, ignore_index: int = 255) -> Tensor:
    """Mean cross-entropy over the pixels whose target is not ``ignore_index`` (0 if there are none)."""
    per_pixel = F.cross_entropy(logits.float(), target, ignore_index=ignore_index, reduction="none")
    valid = (target != ignore_index).sum()
    return per_pixel.sum() / valid.clamp(min=1)


@torch.no_grad()
def ohem_mask(
    logits: Tensor, target: Tensor, thresh: float, min_kept: int, ignore_index: int = 255
) -> Tensor:
    """Which pixels OHEM keeps: bool (B, H, W).

    A labelled pixel is kept when the softmax probability of its ground-truth class is ``< thresh``, or when
    it is among the ``min_kept`` hardest labelled pixels of the whole batch, i.e. its probability is ``<=``
    the ``min_kept``-th smallest one (ties at that value are all kept). So at least
    ``min(min_kept, #labelled)`` pixels are kept, and all of them when fewer are labelled. This equals the
    authors' rule (threshold = max(thresh, min_kept-th smallest probability), keep ``<=``) except that a
    pixel exactly at ``thresh`` is dropped, as in mmsegmentation (keep ``< threshold``).
    """
    valid = target != ignore_index
    safe_target = torch.where(valid, target, torch.zeros_like(target))
    prob = logits.float().softmax(dim=1).gather(1, safe_target.unsqueeze(1)).squeeze(1)  # (B, H, W)
    keep = valid & (prob < thresh)
    count = min(int(min_kept), prob.numel())  # static shapes only: no device -> host copy
    if count > 0:
        # ignored pixels get +inf so they are never among the hardest; if fewer than min_kept pixels are
        # labelled the count-th value is +inf and every labelled pixel is kept
        ranked = torch.where(valid, prob, torch.full_like(prob, float("inf"))).flatten()
        kth = ranked.topk(count, largest=False, sorted=False).values.max()
        keep |= valid & (prob <= kth)
    return keep


class OhemCrossEntropy(nn.Module):
    """Cross-entropy averaged over the pixels chosen by :func:`ohem_mask` (the authors' normalisation).

    Args:
        thresh: probability below which a pixel is hard (0.7 in the authors' Cityscapes recipe).
        min_kept: minimum number of pixels kept per (process) batch (100000 in that recipe).
        ignore_index: label of unlabelled pixels.
    """

    def __init__(self, thresh: float = 0.7, min_kept: int = 100000, ignore_index: int = 255) -> None:
        super().__init__()
        if not 0.0 < thresh <= 1.0 or min_kept < 0:
            raise ValueError(f"OHEM: need 0 < thresh <= 1 and min_kept >= 0, got {thresh}, {min_kept}")
        self.thresh, self.min_kept, self.ignore_index = thresh, int(min_kept), ignore_index

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        keep = ohem_mask(logits, target, self.thresh, self.min_kept, self.ignore_index)
        per_pixel = F.cross_entropy(logits.float(), target, ignore_index=self.ignore_index, reduction="none")
        return (per_pixel * keep).sum() / keep.sum().clamp(min=1)

    def extra_repr(self) -> str:
        return f"thresh={self.thresh}, min_kept={self.min_kept}"


# --- CE2P's edge loss --------------------------------------------------------------------------------------
@torch.no_grad()
def edge_target(target: Tensor, ignore_index: int = 255, width: int = 3) -> Tensor:
    """CE2P's edge ground truth from labels (B, H, W) -> int64 (B, H, W) in {0, 1}.

    A pixel is an edge pixel when its label differs from that of its right, lower, lower-right or lower-left
    neighbour, neither of the two being ``ignore_index``; the marks are then dilated by a ``width`` x
    ``width`` square (3: one pixel on each side).
    """
    t = target
    valid = t != ignore_index
    marks = torch.zeros_like(t, dtype=torch.bool)
    # (the pixel's slice, its neighbour's slice) for the right, lower, lower-right and lower-left neighbours
    neighbours = (
        ((slice(None), slice(None, -1)), (slice(None), slice(1, None))),
        ((slice(None, -1), slice(None)), (slice(1, None), slice(None))),
        ((slice(None, -1), slice(None, -1)), (slice(1, None), slice(1, None))),
        ((slice(None, -1), slice(1, None)), (slice(1, None), slice(None, -1))),
    )
    for here, there in neighbours:
        here, there = (Ellipsis, *here), (Ellipsis, *there)
        marks[here] |= (t[here] != t[there]) & valid[here] & valid[there]
    dilated = F.max_pool2d(marks.unsqueeze(1).float(), width, stride=1, padding=width // 2)
    return dilated.squeeze(1).to(torch.int64)


def edge_class_weights(edges: Tensor) -> Tensor:
    """CE2P's per-batch class weights (2,) ``[w_non_edge, w_edge]`` = ``[positives, negatives] / total``:
    the rarer class (edges) weighs more."""
    total = edges.numel()
    positives = edges.sum().float()
    return torch.stack([positives, total - positives]) / total


def balanced_edge_cross_entropy(edge_logits: Tensor, target: Tensor, ignore_index: int = 255) -> Tensor:
    """CE2P's edge loss: cross-entropy of edge logits (B, 2, h, w) against :func:`edge_target` of the labels
    (B, H, W), weighted by :func:`edge_class_weights` (weighted mean ``sum w_y nll / sum w_y`` over every
    pixel, as ``F.cross_entropy(weight=...)``; 0 for a batch without edges). Logits of another size are
    upsampled bilinearly (``align_corners=True``) to the label size first."""
    if tuple(edge_logits.shape[-2:]) != tuple(target.shape[-2:]):
        edge_logits = F.interpolate(
            edge_logits.float(), size=tuple(target.shape[-2:]), mode="bilinear", align_corners=True
        )
    edges = edge_target(target, ignore_index)
    weights = edge_class_weights(edges)[edges]  # (B, H, W) weight of each pixel's class
    nll = F.cross_entropy(edge_logits.float(), edges, reduction="none")
    return (weights * nll).sum() / weights.sum().clamp(min=1e-12)


# --- category consistent loss ----------------------------------------------------------------------------
class CategoryConsistentTerms(NamedTuple):
    """The three terms (0-dim tensors), each averaged over the images that hold labelled pixels."""

    variance: Tensor
    distance: Tensor
    regularisation: Tensor


def _norm(x: Tensor, eps: float = 1e-12) -> Tensor:
    """Euclidean norm over the last dim with a finite gradient at 0 (the value differs by <= sqrt(eps))."""
    return (x.square().sum(-1) + eps).sqrt()


def category_consistent_terms(
    embeddings: Tensor,
    target: Tensor,
    num_classes: int,
    *,
    delta_v: float = 0.5,
    delta_d: float = 1.5,
    ignore_index: int = 255,
) -> CategoryConsistentTerms:
    """Variance, distance and regularisation terms of the category consistent loss.

    For each image, with C the set of classes labelled in it, N_c the pixel count of class c, h_i the
    embedding of pixel i and mu_c the mean embedding of class c:

    - variance: 1/|C| sum_c 1/N_c sum_{i in c} phi_var(||mu_c - h_i||), where phi_var(d) = 0 for
      d <= delta_v, (d - delta_v)^2 for delta_v < d <= delta_d, and d - delta_d + (delta_d - delta_v)^2 for
      d > delta_d (continuous at delta_d);
    - distance: 1/(|C|(|C|-1)) sum_{a != b} phi_dis(||mu_a - mu_b||), phi_dis(d) = (2 delta_d - d)^2 for
      d <= 2 delta_d, else 0; 0 for an image with fewer than two classes;
    - regularisation: 1/|C| sum_c ||mu_c||.

    Each term is averaged over the images with at least one labelled pixel (0 if there are none).

    Args:
        embeddings: (B, D, H, W) float features at label resolution.
        target: (B, H, W) int64 labels in 0..num_classes-1; ``ignore_index`` pixels (and any label outside
            that range) are left out of everything.
        num_classes: K.
    """
    B, D, H, W = embeddings.shape
    K = int(num_classes)
    h = embeddings.float().permute(0, 2, 3, 1).reshape(B * H * W, D)  # (B N, D)
    labels = target.reshape(B, H * W)
    valid = (labels != ignore_index) & (labels >= 0) & (labels < K)
    # Every (image, class) pair is one of B x (K + 1) bins, the last bin of each image collecting its
    # unlabelled pixels: class statistics come from index_add_ without boolean indexing (no host sync).
    bins = torch.where(valid, labels, torch.full_like(labels, K))  # (B, N)
    bins = (bins + (K + 1) * torch.arange(B, device=labels.device).unsqueeze(1)).reshape(-1)  # (B N,)

    ones = torch.ones_like(bins, dtype=h.dtype)
    counts = h.new_zeros(B * (K + 1)).index_add_(0, bins, ones)  # N_c per bin
    means = h.new_zeros(B * (K + 1), D).index_add_(0, bins, h) / counts.clamp(min=1).unsqueeze(1)

    # variance term: distance of each pixel to its class mean, averaged per class, then over classes
    dist = _norm(h - means[bins])  # (B N,)
    phi_var = torch.where(
        dist <= delta_v,
        torch.zeros_like(dist),
        torch.where(dist <= delta_d, (dist - delta_v).square(), dist - delta_d + (delta_d - delta_v) ** 2),
    )
    per_class_var = h.new_zeros(B * (K + 1)).index_add_(0, bins, phi_var) / counts.clamp(min=1)

    present = counts.view(B, K + 1)[:, :K] > 0  # (B, K), the ignored bin dropped
    num_present = present.sum(1)  # (B,) |C|
    means = means.view(B, K + 1, D)[:, :K]  # (B, K, D)
    per_class_var = per_class_var.view(B, K + 1)[:, :K]
    variance = (per_class_var * present).sum(1) / num_present.clamp(min=1)  # (B,)

    # distance term over ordered pairs of distinct present classes
    pair_dist = _norm(means.unsqueeze(2) - means.unsqueeze(1))  # (B, K, K)
    distinct = ~torch.eye(K, dtype=torch.bool, device=h.device)
    pairs = present.unsqueeze(2) & present.unsqueeze(1) & distinct  # (B, K, K)
    phi_dis = (2 * delta_d - pair_dist).clamp(min=0).square()  # (2 delta_d - d)^2 where d <= 2 delta_d
    distance = (phi_dis * pairs).sum((1, 2)) / (num_present * (num_present - 1)).clamp(min=1)  # (B,)

    regularisation = (_norm(means) * present).sum(1) / num_present.clamp(min=1)  # (B,)

    images = (num_present > 0).sum().clamp(min=1)
    return CategoryConsistentTerms(
        variance.sum() / images, distance.sum() / images, regularisation.sum() / images
    )


class CategoryConsistentLoss(nn.Module):
    """The TPAMI category consistent loss on features projected to a low dimension.

    ``alpha * variance + beta * distance + gamma * regularisation`` (see :func:`category_consistent_terms`)
    on ``projection(features)`` upsampled bilinearly to the label size. The projection (a 1x1 conv, C -> dim,
    trained with the network) belongs to the loss: the network's own outputs are unchanged, so a model
    trained with it is used exactly as one trained without.

    Args:
        in_channels: C of the features (the output channels of the model's context module).
        num_classes: K.
        dim: projection dimension (16 in the paper).
        delta_v, delta_d: margins of the variance and distance terms (0.5, 1.5).
        alpha, beta, gamma: term weights (1, 1, 0.001).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        *,
        dim: int = 16,
        delta_v: float = 0.5,
        delta_d: float = 1.5,
        alpha: float = 1.0,
        beta: float = 1.0,
        gamma: float = 0.001,
        ignore_index: int = 255,
    ) -> None:
        super().__init__()
        if not 0 <= delta_v < delta_d:
            raise ValueError(
                f"category consistent loss: need 0 <= delta_v < delta_d, got {delta_v}, {delta_d}"
            )
        self.projection = nn.Conv2d(in_channels, dim, 1)
        self.num_classes = num_classes
        self.delta_v, self.delta_d = delta_v, delta_d
        self.alpha, self.beta, self.gamma = alpha, beta, gamma
        self.ignore_index = ignore_index

    def embed(self, features: Tensor, size: tuple[int, int]) -> Tensor:
        """(B, C, h, w) features -> (B, dim, H, W) embeddings at label size ``size``."""
        embeddings = self.projection(features.float())
        if tuple(embeddings.shape[-2:]) != tuple(size):
            embeddings = F.interpolate(embeddings, size=size, mode="bilinear", align_corners=False)
        return embeddings

    def forward(self, features: Tensor, target: Tensor) -> tuple[Tensor, CategoryConsistentTerms]:
        """Weighted total (0-dim) and the unweighted terms, for features (B, C, h, w), target (B, H, W)."""
        return self.loss_from_embeddings(self.embed(features, tuple(target.shape[-2:])), target)

    def loss_from_embeddings(
        self, embeddings: Tensor, target: Tensor
    ) -> tuple[Tensor, CategoryConsistentTerms]:
        """As ``forward``, from embeddings (B, dim, H, W) already computed with :meth:`embed`."""
        terms = category_consistent_terms(
            embeddings,
            target,
            self.num_classes,
            delta_v=self.delta_v,
            delta_d=self.delta_d,
            ignore_index=self.ignore_index,
        )
        total = self.alpha * terms.variance + self.beta * terms.distance + self.gamma * terms.regularisation
        return total, terms


class SegmentationLoss(nn.Module):
    """Main head (cross-entropy, or OHEM when ``ohem`` is given) + ``aux_weight`` x cross-entropy on aux.

    ``forward(logits, aux_logits, target)`` -> dict of 0-dim tensors: ``"loss"`` (the total to minimise),
    ``"main"`` and, when ``aux_logits`` is not None, ``"aux"`` (unweighted). When ``aux_logits`` is a
    :class:`~ccnet.models.ccnet.ParsingAux` (CE2P: ``.parsing`` logits and ``.edge`` logits), ``"aux"`` is the
    cross-entropy of ``.parsing`` and ``"edge"`` the :func:`balanced_edge_cross_entropy` of ``.edge``, added
    with ``edge_weight``: CE2P's loss is ``aux_weight=1, edge_weight=1``.
    """

    def __init__(
        self,
        *,
        aux_weight: float = 0.4,
        ohem: OhemCrossEntropy | None = None,
        ignore_index: int = 255,
        edge_weight: float = 1.0,
    ) -> None:
        super().__init__()
        self.aux_weight, self.ohem, self.ignore_index = aux_weight, ohem, ignore_index
        self.edge_weight = edge_weight

    def forward(self, logits: Tensor, aux_logits: Any, target: Tensor) -> dict[str, Tensor]:
        if self.ohem is not None:
            main = self.ohem(logits, target)
        else:
            main = cross_entropy(logits, target, self.ignore_index)
        terms = {"loss": main, "main": main}
        edge_logits = getattr(aux_logits, "edge", None)  # a ParsingAux (duck-typed: models are not imported)
        if edge_logits is not None:
            aux_logits = aux_logits.parsing
        if aux_logits is not None and self.aux_weight:
            aux = cross_entropy(aux_logits, target, self.ignore_index)
            terms["aux"] = aux
            terms["loss"] = terms["loss"] + self.aux_weight * aux
        if edge_logits is not None and self.edge_weight:
            edge = balanced_edge_cross_entropy(edge_logits, target, self.ignore_index)
            terms["edge"] = edge
            terms["loss"] = terms["loss"] + self.edge_weight * edge
        return terms
