"""``ccnet export [--model NAME] --weights W --format onnx|torchscript OUT``: deployable model files.

ONNX: opset 17, input ``images`` (B, 3, H, W) float32 normalised images, output ``logits`` (B, K, H, W),
dynamic batch/height/width, ccnet metadata (classes, palette, normalisation) for ``ccnet predict --backend
onnxruntime``. TorchScript: ``torch.jit.trace`` of the same function. Unless ``--no-check``, the file is
reloaded (onnxruntime / ``torch.jit.load``) and compared with PyTorch on two input sizes different from the
export example: max |logit difference| and argmax agreement are printed, and the exit code is 1 when the
agreement is below ``--min-agreement``. OUT must not be the weights file, and an existing OUT needs
``--force``; both are checked before the export starts.
"""

from __future__ import annotations

import argparse
import sys

from ccnet.cli.common import fail, weights_command_exit_code

PROG = "ccnet export"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", metavar="OUT", help="output file (.onnx or .pt)")
    parser.add_argument("--weights", required=True, help="weights file, training checkpoint or zoo name")
    parser.add_argument("--model", default=None, help="registered model name (default: named by the weights)")
    parser.add_argument("--format", choices=("onnx", "torchscript"), default="onnx", help="default: onnx")
    parser.add_argument(
        "--example-size", nargs=2, type=int, default=(64, 96), metavar=("H", "W"), help="traced example size"
    )
    parser.add_argument(
        "--check-sizes",
        nargs="+",
        default=("1x48x80", "2x37x53"),
        metavar="BxHxW",
        help="input sizes of the parity check (default: 1x48x80 2x37x53)",
    )
    parser.add_argument(
        "--min-agreement", type=float, default=0.9999, help="required argmax agreement (default 0.9999)"
    )
    parser.add_argument("--no-check", action="store_true", help="skip the parity check")
    parser.add_argument("--force", action="store_true", help="overwrite OUT if it exists")


def _parse_size(text: str) -> tuple[int, int, int, int]:
    try:
        batch, height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"--check-sizes: expected BxHxW such as 1x48x80, got {text!r}") from None
    return batch, 3, height, width


def run(args: argparse.Namespace) -> int:
    from ccnet.deploy.export import export_onnx, export_torchscript, onnx_parity, torchscript_parity
    from ccnet.engine.predict import check_output_file
    from ccnet.engine.setup import load_model

    try:
        shapes = [_parse_size(text) for text in args.check_sizes]
        model, info = load_model(args.weights, name=args.model, device="cpu")
        # Checked before the (slow) export: never overwrite the weights read, nor an existing file silently.
        check_output_file(args.out, inputs=[args.weights], force=args.force, option="OUT")
        if args.format == "onnx":
            metadata = {"classes": info["classes"], "palette": info["palette"]}
            path = export_onnx(model, args.out, example_size=tuple(args.example_size), metadata=metadata)
        else:
            path = export_torchscript(model, args.out, example_size=tuple(args.example_size))
    except (OSError, ValueError, RuntimeError, ImportError) as err:
        return fail(PROG, err, weights_command_exit_code(err))
    print(f"wrote {path} ({args.format}, input images (B, 3, H, W) -> logits (B, {model.num_classes}, H, W))")
    if args.no_check:
        return 0
    parity = (onnx_parity if args.format == "onnx" else torchscript_parity)(model, path, shapes)
    runtime = "onnxruntime" if args.format == "onnx" else "torch.jit.load"
    for result in parity:
        print(f"parity vs PyTorch ({runtime}) {result}")
    worst = min(result.argmax_agreement for result in parity)
    if worst < args.min_agreement:
        print(f"{PROG}: argmax agreement {worst:.6f} < {args.min_agreement}", file=sys.stderr)
        return 1
    return 0
