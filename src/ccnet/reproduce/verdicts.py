"""Whether one variant beats another over seeds: the verdicts of the demo's and the video demo's claims."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["compare"]


def _difference(summary: dict[str, dict[str, Any]], low: str, high: str) -> dict[str, Any]:
    """Is ``high`` better than ``low``: mean difference, its 2-standard-error margin, per-seed wins."""
    a, b = summary[low], summary[high]
    diff = b["miou_mean"] - a["miou_mean"]
    se = math.sqrt(a["miou_std"] ** 2 / len(a["miou"]) + b["miou_std"] ** 2 / len(b["miou"]))
    by_seed_a = dict(zip(a["seeds"], a["miou"], strict=True))
    pairs = [(by_seed_a[s], v) for s, v in zip(b["seeds"], b["miou"], strict=True) if s in by_seed_a]
    wins = sum(1 for x, y in pairs if y > x)
    return {"difference": diff, "margin": 2 * se, "seed_wins": wins, "seed_pairs": len(pairs)}


def compare(summary: dict[str, dict[str, Any]], low: str, high: str) -> dict[str, Any]:
    """Is ``high`` better than ``low`` in ``summary`` (per variant: ``miou`` per seed, ``seeds``,
    ``miou_mean``, ``miou_std``)?

    Returns ``difference`` (mIoU of ``high`` minus ``low``), ``margin`` (2 standard errors of that
    difference), ``seed_wins`` / ``seed_pairs`` and the ``verdict``: ``"holds"`` (higher on average, by more
    than the margin, on every seed), ``"holds on average"`` (higher on average only), ``"within noise"``
    (|difference| <= margin) or ``"does not hold"``; with one seed only ``"higher (one seed)"`` / ``"not
    higher (one seed)"``.
    """
    result = _difference(summary, low, high)
    diff, margin = result["difference"], result["margin"]
    if len(summary[low]["miou"]) < 2 or len(summary[high]["miou"]) < 2:
        verdict = "higher (one seed)" if diff > 0 else "not higher (one seed)"
    elif diff > margin and result["seed_wins"] == result["seed_pairs"]:
        verdict = "holds"
    elif abs(diff) <= margin or (margin == 0 and diff == 0):
        verdict = "within noise"
    elif diff > 0:
        verdict = "holds on average"
    else:
        verdict = "does not hold"
    return {**result, "verdict": verdict}
