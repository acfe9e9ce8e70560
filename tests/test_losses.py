"""Losses against hand-computed values: cross-entropy, OHEM selection, every branch of the category
consistent loss (TPAMI), and the combined main + aux loss."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ccnet.losses import (
    CategoryConsistentLoss,
    OhemCrossEntropy,
    SegmentationLoss,
    category_consistent_terms,
    cross_entropy,
    ohem_mask,
)

IGNORE = 255


def _two_class_logits(probs: list[list[float]]) -> torch.Tensor:
    """(B, 2, 1, N) logits whose class-0 softmax probability is ``probs[b][i]`` (targets are class 0)."""
    p = torch.tensor(probs, dtype=torch.float64)
    return torch.stack([p.log(), (1 - p).log()], dim=1).unsqueeze(2)


# --- cross-entropy -----------------------------------------------------------------------------------
def test_cross_entropy_is_the_mean_over_labelled_pixels():
    logits = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0], [5.0, -5.0]]).T.reshape(1, 2, 1, 3)
    target = torch.tensor([[[0, 0, IGNORE]]])
    # pixel 0: p = 1/2; pixel 1: p = 3/4; pixel 2 ignored
    expected = (math.log(2) + math.log(4 / 3)) / 2
    assert cross_entropy(logits, target).item() == pytest.approx(expected, rel=1e-6)


def test_cross_entropy_without_labelled_pixels_is_zero_not_nan():
    loss = cross_entropy(torch.randn(1, 3, 2, 2), torch.full((1, 2, 2), IGNORE))
    assert loss.item() == 0.0


# --- OHEM ------------------------------------------------------------------------------------------------
PROBS = [[0.2, 0.5, 0.75, 0.9, 0.95, 0.3]]  # ground-truth probabilities; the last pixel is ignored
TARGET = torch.tensor([[[0, 0, 0, 0, 0, IGNORE]]])


@pytest.mark.parametrize(
    ("thresh", "min_kept", "kept"),
    [
        (0.7, 0, [1, 1, 0, 0, 0, 0]),  # p < 0.7 only; never the ignored pixel
        (0.7, 4, [1, 1, 1, 1, 0, 0]),  # the 4 hardest: p <= 0.9 (the 4th smallest)
        (0.7, 1, [1, 1, 0, 0, 0, 0]),  # min_kept below the thresh count changes nothing
        (0.7, 100, [1, 1, 1, 1, 1, 0]),  # fewer labelled pixels than min_kept: all labelled pixels
        (0.99, 2, [1, 1, 1, 1, 1, 0]),  # a high thresh keeps everything labelled
    ],
)
def test_ohem_selection(thresh, min_kept, kept):
    logits = _two_class_logits(PROBS)
    mask = ohem_mask(logits, TARGET, thresh, min_kept)
    assert mask.dtype == torch.bool and mask.shape == TARGET.shape
    assert mask.flatten().int().tolist() == kept


def test_ohem_drops_a_pixel_exactly_at_thresh():
    logits = torch.zeros(1, 2, 1, 1)  # p = 0.5 exactly
    target = torch.zeros(1, 1, 1, dtype=torch.int64)
    assert not ohem_mask(logits, target, thresh=0.5, min_kept=0).any()
    assert ohem_mask(logits, target, thresh=0.5001, min_kept=0).all()


def test_ohem_keeps_all_ties_at_the_min_kept_th_probability():
    logits = _two_class_logits([[0.2, 0.9, 0.9, 0.95]])
    mask = ohem_mask(logits, torch.zeros(1, 1, 4, dtype=torch.int64), thresh=0.5, min_kept=2)
    assert mask.flatten().int().tolist() == [1, 1, 1, 0]


def test_ohem_counts_min_kept_over_the_whole_batch():
    logits = _two_class_logits([[0.1, 0.8], [0.6, 0.9]])
    mask = ohem_mask(logits, torch.zeros(2, 1, 2, dtype=torch.int64), thresh=0.05, min_kept=3)
    assert mask.flatten().int().tolist() == [1, 1, 1, 0]  # the 3 hardest of the 4 pixels of the batch


def test_ohem_loss_is_the_mean_over_kept_pixels():
    logits = _two_class_logits(PROBS)
    loss = OhemCrossEntropy(thresh=0.7, min_kept=4)(logits, TARGET)
    expected = -(math.log(0.2) + math.log(0.5) + math.log(0.75) + math.log(0.9)) / 4
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="thresh"):
        OhemCrossEntropy(thresh=0.0)


def test_ohem_gradient_reaches_only_kept_pixels():
    logits = _two_class_logits(PROBS).float().requires_grad_(True)
    OhemCrossEntropy(thresh=0.7, min_kept=0)(logits, TARGET).backward()
    touched = logits.grad.abs().sum(1).flatten() > 0
    assert touched.int().tolist() == [1, 1, 0, 0, 0, 0]


# --- category consistent loss ---------------------------------------------------------------------------
# Image A, D = 2 (pixels in one row; the last pixel is ignored and far away, so it must not count):
#   class 0: (1, 0), (1, 0.8)  mean (1, 0.4)  d = 0.4 <= delta_v              -> phi_var 0
#   class 1: (3, 0), (3, 2)    mean (3, 1)    delta_v < d = 1 <= delta_d      -> (1 - 0.5)^2 = 0.25
#   class 2: (0, 5), (4, 5)    mean (2, 5)    d = 2 > delta_d                 -> 2 - 1.5 + 1^2 = 1.5
#   distances of means: |mu0 - mu1| = sqrt(4.36) <= 3 -> (3 - sqrt(4.36))^2 (hinge active, both orders);
#   |mu0 - mu2| = sqrt(22.16) and |mu1 - mu2| = sqrt(17) > 3 -> 0 (inactive)
# Image B: one class (1), both pixels at (0.3, 0.4): d = 0 everywhere, no pair of classes.
IMAGE_A = [(1, 0), (1, 0.8), (3, 0), (3, 2), (0, 5), (4, 5), (100, 100)]
LABELS_A = [0, 0, 1, 1, 2, 2, IGNORE]
IMAGE_B = [(0.3, 0.4), (0.3, 0.4)] + [(7.0, 7.0)] * 5
LABELS_B = [1, 1] + [IGNORE] * 5
VAR_A = (0.0 + 0.25 + 1.5) / 3
DIS_A = 2 * (3 - math.sqrt(4.36)) ** 2 / (3 * 2)
REG_A = (math.sqrt(1.16) + math.sqrt(10) + math.sqrt(29)) / 3
VAR_B, DIS_B, REG_B = 0.0, 0.0, 0.5


def _embeddings(*images: list[tuple[float, float]]) -> torch.Tensor:
    """(B, 2, 1, N) float64 embeddings from per-image pixel lists."""
    return torch.tensor(images, dtype=torch.float64).permute(0, 2, 1).unsqueeze(2)


def _labels(*rows: list[int]) -> torch.Tensor:
    return torch.tensor(rows).unsqueeze(1)  # (B, 1, N)


def test_ccl_terms_for_every_branch():
    terms = category_consistent_terms(_embeddings(IMAGE_A), _labels(LABELS_A), num_classes=3)
    assert terms.variance.item() == pytest.approx(VAR_A, abs=1e-6)
    assert terms.distance.item() == pytest.approx(DIS_A, abs=1e-6)
    assert terms.regularisation.item() == pytest.approx(REG_A, abs=1e-6)


def test_ccl_single_class_image_has_no_distance_term():
    terms = category_consistent_terms(_embeddings(IMAGE_B), _labels(LABELS_B), num_classes=3)
    assert terms.variance.item() == pytest.approx(VAR_B, abs=1e-5)
    assert terms.distance.item() == 0.0
    assert terms.regularisation.item() == pytest.approx(REG_B, abs=1e-6)


def test_ccl_terms_average_over_images_and_skip_unlabelled_ones():
    empty = [(9.0, 9.0)] * 7
    embeddings = _embeddings(IMAGE_A, IMAGE_B, empty)
    terms = category_consistent_terms(embeddings, _labels(LABELS_A, LABELS_B, [IGNORE] * 7), num_classes=3)
    assert terms.variance.item() == pytest.approx((VAR_A + VAR_B) / 2, abs=1e-5)
    assert terms.distance.item() == pytest.approx((DIS_A + DIS_B) / 2, abs=1e-6)
    assert terms.regularisation.item() == pytest.approx((REG_A + REG_B) / 2, abs=1e-6)


def test_ccl_far_apart_means_have_no_distance_term():
    far = [(0, 0), (0, 0), (10, 0), (10, 0)]
    terms = category_consistent_terms(_embeddings(far), _labels([0, 0, 1, 1]), num_classes=2)
    assert terms.distance.item() == 0.0


def test_ccl_gradients_are_finite_at_zero_distances():
    embeddings = _embeddings(IMAGE_A, IMAGE_B).requires_grad_(True)
    terms = category_consistent_terms(embeddings, _labels(LABELS_A, LABELS_B), num_classes=3)
    sum(terms).backward()
    assert torch.isfinite(embeddings.grad).all()
    assert embeddings.grad[0, :, 0, 6].abs().sum() == 0  # the ignored pixel gets no gradient


def _ccl_terms_by_formula(embeddings, target, num_classes, delta_v=0.5, delta_d=1.5):
    """The TPAMI formulas written out per image and per class (loops, float64), averaged over the images
    that hold a labelled pixel: (variance, distance, regularisation) as floats."""
    per_image = []
    for h, labels in zip(embeddings.double(), target, strict=True):  # h (D, H, W), labels (H, W)
        classes = [c for c in range(num_classes) if (labels == c).any()]
        if not classes:
            continue
        means = {c: h[:, labels == c].mean(1) for c in classes}
        variance = 0.0
        for c in classes:
            d = (h[:, labels == c] - means[c][:, None]).norm(dim=0)
            phi = [
                0.0 if x <= delta_v else (x - delta_v) ** 2 if x <= delta_d else x - delta_d + 1.0
                for x in d.tolist()
            ]
            variance += sum(phi) / len(phi) / len(classes)
        pairs = [(a, b) for a in classes for b in classes if a != b]
        distance = sum(max(0.0, 2 * delta_d - (means[a] - means[b]).norm().item()) ** 2 for a, b in pairs)
        distance = distance / len(pairs) if pairs else 0.0
        regularisation = sum(means[c].norm().item() for c in classes) / len(classes)
        per_image.append((variance, distance, regularisation))
    return tuple(sum(values) / len(per_image) for values in zip(*per_image, strict=True))


def test_ccl_module_weights_the_terms_and_projects_to_label_size():
    torch.manual_seed(0)
    loss = CategoryConsistentLoss(8, num_classes=3, dim=4, alpha=2.0, beta=3.0, gamma=0.5)
    with torch.no_grad():  # spread the embeddings so that every branch of phi_var and phi_dis is reached
        loss.projection.weight.mul_(4.0)
    features = torch.randn(2, 8, 4, 4)
    target = torch.randint(0, 3, (2, 16, 16))
    target[1, :8] = IGNORE
    total, terms = loss(features, target)

    # independent: the 1x1 projection and the bilinear resize to label size, then the formulas by hand
    embeddings = F.interpolate(
        F.conv2d(features, loss.projection.weight, loss.projection.bias),
        size=(16, 16),
        mode="bilinear",
        align_corners=False,
    )
    variance, distance, regularisation = _ccl_terms_by_formula(embeddings, target, 3)
    assert variance > 0 and distance > 0  # non-trivial values, not zeros that any weighting matches
    assert terms.variance.item() == pytest.approx(variance, rel=1e-5)
    assert terms.distance.item() == pytest.approx(distance, rel=1e-5)
    assert terms.regularisation.item() == pytest.approx(regularisation, rel=1e-5)
    assert total.item() == pytest.approx(2.0 * variance + 3.0 * distance + 0.5 * regularisation, rel=1e-5)
    assert loss.embed(features, (16, 16)).shape == (2, 4, 16, 16)
    total.backward()
    assert loss.projection.weight.grad is not None


# --- main + aux -------------------------------------------------------------------------------------------
def _ce_by_hand(logits, target):
    """Per-pixel -log softmax(logits)[target] written out (max-shifted log-sum-exp), float64: (B, H, W)."""
    x = logits.double()
    shifted = x - x.max(dim=1, keepdim=True).values
    log_probs = shifted - shifted.exp().sum(dim=1, keepdim=True).log()
    safe = torch.where(target == IGNORE, torch.zeros_like(target), target)
    return -log_probs.gather(1, safe.unsqueeze(1)).squeeze(1)


def test_segmentation_loss_adds_weighted_aux():
    torch.manual_seed(0)
    logits, aux, target = torch.randn(2, 3, 5, 5), torch.randn(2, 3, 5, 5), torch.randint(0, 3, (2, 5, 5))
    target[0, 0] = IGNORE  # five unlabelled pixels
    labelled = target != IGNORE
    main = _ce_by_hand(logits, target)[labelled].mean().item()
    aux_ce = _ce_by_hand(aux, target)[labelled].mean().item()
    assert main != pytest.approx(aux_ce)  # the two heads differ, so swapping them would show
    terms = SegmentationLoss(aux_weight=0.4)(logits, aux, target)
    assert terms["main"].item() == pytest.approx(main, rel=1e-5)
    assert terms["aux"].item() == pytest.approx(aux_ce, rel=1e-5)
    assert terms["loss"].item() == pytest.approx(main + 0.4 * aux_ce, rel=1e-5)
    no_aux = SegmentationLoss()(logits, None, target)
    assert set(no_aux) == {"loss", "main"} and no_aux["loss"].item() == pytest.approx(main, rel=1e-5)

    # OHEM on the main head: the pixels whose true-class probability is < 0.7, or the 10 hardest
    ce = _ce_by_hand(logits, target)[labelled]
    probs = (-ce).exp()
    tenth = sorted(probs.tolist())[9]
    kept = (probs < 0.7) | (probs <= tenth)
    assert 10 <= int(kept.sum()) < int(labelled.sum())  # both rules matter: some pixels are dropped
    ohem = SegmentationLoss(ohem=OhemCrossEntropy(0.7, 10), aux_weight=0.4)(logits, aux, target)
    assert ohem["main"].item() == pytest.approx(ce[kept].mean().item(), rel=1e-5)
    assert ohem["loss"].item() == pytest.approx(ce[kept].mean().item() + 0.4 * aux_ce, rel=1e-5)
