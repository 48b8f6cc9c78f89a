"""``napari-unet export``: a model file as a bioimage.io model package (format 0.5).

Only argument wiring and printing live here; the work is in ``core.bioimageio_export``.
"""
from __future__ import annotations

import sys
from pathlib import Path


def add_export_parser(sub) -> None:
    p = sub.add_parser(
        "export", help="write a model as a bioimage.io model package (.zip)",
        description="Writes a bioimage.io model package (format 0.5): pytorch_state_dict weights with "
                    "the U-Net's source, TorchScript weights, test tensors, a cover, a README and "
                    "the training record. bioimageio.core's test_model checks it (offline) before it "
                    "is written. predict --model, train --init and the plugin's Load accept it back. "
                    "Needs: pip install 'napari-unet[bioimageio]'.")
    p.add_argument("--model", required=True, help="model file (.pt, or a package exported before)")
    p.add_argument("--out", required=True, help="package to write (NAME.zip)")
    p.add_argument("--name", help="the model's name on bioimage.io (default: from its classes)")
    p.add_argument("--description", help="one or two sentences about the model")
    p.add_argument("--author", action="append", default=None, help="author name (repeatable)")
    p.add_argument("--license", default="CC-BY-4.0", help="SPDX license id (default CC-BY-4.0)")
    p.add_argument("--test-image", help="an image like the training data for the test tensors and "
                                        "the cover (default: a synthetic image)")
    p.add_argument("--channel-axis", type=int, default=None, help="axis of --test-image holding channels")
    p.add_argument("--no-test", action="store_true", help="do not run bioimageio.core's test_model")
    p.add_argument("--overwrite", action="store_true", help="replace a package exported before")
    p.set_defaults(func=cmd_export)


def cmd_export(args) -> int:
    from ._cli_args import _existing_file
    from .core.bioimageio_export import (PackageTestFailed, export_bioimageio, require_bioimageio,
                                         summary_text)

    model = _existing_file(args.model, "model file")
    test_image = None
    if args.test_image:
        from .core.io import read_image

        test_image = read_image(_existing_file(args.test_image, "--test-image"))
    require_bioimageio()

    def announce() -> None:  # once --out and the model passed their checks: an error comes alone
        print(f"exporting {model.name} to {args.out}" + ("" if args.no_test else
              " and testing it with bioimageio.core"), file=sys.stderr)

    try:
        res = export_bioimageio(str(model), args.out, name=args.name, description=args.description,
                                authors=args.author, license=args.license, test_image=test_image,
                                channel_axis=args.channel_axis, run_test=not args.no_test,
                                overwrite=args.overwrite, on_start=announce)
    except PackageTestFailed as e:
        _print(summary_text(e.summary), sys.stderr)
        print(f"napari-unet: error: {e}", file=sys.stderr)
        return 1
    if res.summary is not None:
        _print(summary_text(res.summary), sys.stdout)
    print(f"wrote {Path(res.path)}" + ("" if res.summary is None else
          f" (bioimageio.core test_model: {res.summary.status})"))
    return 0


def _print(text: str, stream) -> None:
    """The summary has emoji: replace what a non-UTF-8 terminal cannot show."""
    enc = getattr(stream, "encoding", None) or "utf-8"
    print(text.encode(enc, errors="replace").decode(enc, errors="replace"), file=stream)
