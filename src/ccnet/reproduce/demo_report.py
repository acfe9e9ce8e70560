"""The ``ccnet demo`` section of report.md: the results table, the paper's claims and what the numbers show.

Everything here formats the JSON content written by :func:`ccnet.reproduce.demo.run_demo`; nothing is
measured.
"""

from __future__ import annotations

from typing import Any

from ccnet.reproduce.context_task import DISTANCE_BINS
from ccnet.reproduce.report import markdown_table

__all__ = ["demo_markdown", "results_markdown"]


def results_markdown(summary: dict[str, dict[str, Any]], checks: list[dict[str, Any]]) -> str:
    """The mIoU table (mean +- std, per-seed values, object accuracies per distance) and the checks
    (see :func:`ccnet.reproduce.demo.summarize` and :func:`ccnet.reproduce.demo.ordering_checks`)."""
    bins = [f"obj. acc. {lo}-{hi - 1} px" if hi < 64 else f"obj. acc. >= {lo} px" for lo, hi in DISTANCE_BINS]
    header = ["variant", "mIoU mean ± std", "per seed", "object acc.", *bins, "off-axis obj. acc.", "s/run"]
    rows = []
    for s in summary.values():
        per_bin = ["-" if a is None else f"{a:.2f}" for a in s["distance_accuracy"]]
        rows.append(
            [
                s["label"],
                f"{s['miou_mean']:.3f} ± {s['miou_std']:.3f}",
                " ".join(f"{v:.3f}" for v in s["miou"]),
                f"{s['object_accuracy']:.3f}",
                *per_bin,
                f"{s['off_axis_object_accuracy']:.3f}",
                f"{s['seconds']:.0f}",
            ]
        )
    lines = [markdown_table(header, rows), ""]
    check_rows = [
        [
            c["claim"],
            c["paper"],
            f"{c['difference']:+.3f}",
            f"{c['margin']:.3f}",
            f"{c['seed_wins']}/{c['seed_pairs']}",
            f"**{c['verdict']}**",
        ]
        for c in checks
    ]
    lines.append(
        markdown_table(
            [
                "paper's claim",
                "paper (Cityscapes mIoU)",
                "Δ mIoU here",
                "2 SE",
                "seeds where it holds",
                "here",
            ],
            check_rows,
            "llrrrl",
        )
    )
    return "\n".join(lines)


def _explanation(settings: dict[str, Any]) -> str:
    lo, hi = DISTANCE_BINS[0]
    size = settings["image_size"]
    return (
        "Task: the built-in context dataset "
        f"({size}x{size} images, marker placement "
        f"`{settings['marker_placement']}`): "
        "every object's class is the colour of one small marker elsewhere in the image, and nothing local "
        "tells the classes apart. The tiny backbone's receptive field (15 px, features at stride 4) does "
        "not reach the marker, so: **no context** is at chance on objects (accuracy ~1/3); **RCCA R=1** "
        "reaches from a pixel only the features of its own row and column, so it is right where the "
        f"pixel's row or column passes near the marker (the axis-distance columns: {lo}-{hi - 1} px vs "
        "farther) and near chance on the `off_axis` validation set, where no object shares a row or "
        "column band with the marker; **RCCA R=2** reaches every position in two hops (the attention "
        "figure) and is right at every distance; a **non-local block** sees the whole image in one hop."
    )


def _findings(summary: dict[str, dict[str, Any]]) -> list[str]:
    """Sentences explaining what the numbers show (only those the numbers support), each + a blank line."""
    lines = []
    r1, none = summary.get("rcca_r1"), summary.get("none")
    if r1 and none and r1["distance_accuracy"][0] and r1["distance_accuracy"][-1] is not None:
        lines.append(
            f"RCCA R=1 labels {r1['distance_accuracy'][0]:.0%} of the object pixels whose row or column "
            f"passes within {DISTANCE_BINS[0][1] - 1} px of the marker but "
            f"{r1['distance_accuracy'][-1]:.0%} of those >= {DISTANCE_BINS[-1][0]} px away (chance: 33%) "
            f"and {r1['off_axis_object_accuracy']:.0%} on the off-axis set: the one-hop reach, the "
            "structural reason why R=1 < R=2."
        )
    ccl, low = summary.get("rcca_r2_ccl"), summary.get("rcca_r2_ccl_low")
    if ccl and none and ccl["miou_mean"] < none["miou_mean"] + 0.05:
        lines.append(
            "With the category consistent loss at the paper's weights (alpha = beta = 1, gamma = 0.001, on a "
            "16-d projection of the RCCA output) the network never learns to use the marker: it stays at the "
            "no-context level on every seed (also after 3000 iterations). Not a defect (the terms agree with "
            "a brute-force per-image loop to 1e-6), but two properties of the loss here: it depends only on "
            "how each image's pixels group into classes, not on which class (relabelling gives identical "
            "terms), and every image holds one object class, so it carries nothing about the marker rule; "
            "and in the iterations where the model without it learns the rule (250-500), its gradients are "
            "~130x the cross-entropy's on the attention's gamma and ~12x on the head's input conv, so the "
            "cross-entropy signal is drowned (measured, seed 0)."
        )
    if low and ccl:
        lines.append(
            f"Scaled down to alpha = beta = 0.01 it no longer blocks learning ({low['miou_mean']:.3f} mIoU) "
            "and is neutral, as expected on a task with one object class per image; the paper's +0.7 "
            "(Cityscapes) would need images where several classes have to be told apart by context."
        )
    return [item for line in lines for item in (line, "")]


def demo_markdown(result: dict[str, Any], *, quick: bool) -> str:
    """The ``ccnet demo`` section of report.md from the JSON content of :func:`ccnet.reproduce.demo.run_demo`;
    ``quick``: the budget is below the full one (the title says so)."""
    s = result["settings"]
    seeds = s["seeds"]
    facts = result["pictures"]["attention"]
    lines = [
        "## `ccnet demo`: the recurrence ablation on the context task" + (" (quick)" if quick else ""),
        "",
        _explanation(s),
        "",
        f"Budget (identical for every variant): {s['max_iters']} iterations of batch {s['batch_size']} "
        f"(AdamW lr 3e-3, poly schedule, the `default` config), seeds {', '.join(map(str, seeds))}, "
        f"{s['train_length']} training and {s['val_length']} validation images (the same images for every "
        "run; the seed sets the initialisation, data order and dropout); one process per run with one "
        f"thread, {s['workers']} in parallel; total {result['seconds'] / 60:.1f} min. mIoU over the 4 "
        "classes of the validation split; object accuracy = object pixels (the marker excluded) labelled "
        "right, by axis distance = how far the nearer of the pixel's row and column passes from the marker "
        "box.",
        "",
        results_markdown(result["summary"], result["checks"]),
        "",
        *_findings(result["summary"]),
        "Verdicts: *holds* = higher on average by more than two standard errors and on every seed; "
        "*holds on average* = higher on average only; *within noise* = the difference is within two "
        "standard errors. The Cityscapes numbers are the paper's (R-101); the tiny task reproduces the "
        "mechanism, not the numbers.",
        "",
        "![predictions](predictions.png)",
        "",
        "Validation images (objects mostly far from the marker's row and column), ground truth and the "
        f"prediction of each variant (seed {seeds[0]}); colours = the marker's class.",
        "",
    ]
    if facts:
        on_marker = ", ".join(f"{f['loop1_on_marker']:.3f} -> {f['loop2_on_marker']:.3f}" for f in facts)
        share = facts[0]["marker_share_of_image"]
        lines += [
            "![attention](attention.png)",
            "",
            f"The attention figure of the trained `{result['pictures']['attention_model']}` model (seed "
            f"{seeds[0]}): for the white pixel (an object pixel far from the marker's row and column), the "
            "criss-cross weights of loop 1 are nonzero only on its row and column; after loop 2 "
            "(composition of the two passes' attention maps, computed with the library's op from the "
            "module's query/key convolutions at feature resolution) every position of the image feeds it "
            "(all weights > 0). Heat maps on a log scale (6 decades below the maximum; uncoloured = weight "
            "exactly 0). Share of the "
            f"pixel's attention mass on the marker (cyan) after loop 1 -> after loop 2: {on_marker} "
            f"(the marker covers {share:.1%} of the feature grid): one hop cannot reach the cue, the "
            "second hop routes almost all of the attention to it.",
            "",
        ]
    return "\n".join(lines)
