"""The headless demo: train on the sample data's strokes, predict, evaluate, write the outputs.

``napari-unet demo`` (and ``napari-unet gui`` where there is no display) runs it.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

from .core.limits import DEFAULT_TIME_LIMIT_GUI_S


def run_demo(out_dir: Path, *, time_limit: float = DEFAULT_TIME_LIMIT_GUI_S, device: str = "auto", overwrite: bool = False) -> int:
    from ._cli_report import format_scores, report_training
    from .core.device import resolve_device
    from .core.io import save_model, write_tiff
    from .core.metrics import error_map, evaluate
    from .core.predict import predict, probabilities_to_labels
    from .core.synthetic import make_nuclei, sample_2d, sample_3d
    from .core.train import iter_train

    from .core.outputs import check_output, prepare_folder

    out_dir = prepare_folder(Path(out_dir), what="--out-dir")
    for name in ["model.pt"] + [f"{c}_{k}.tif" for c in ("nuclei2d", "heldout2d", "nuclei3d")
                                for k in ("probs", "labels", "errors")]:
        check_output(out_dir / name, overwrite=overwrite, model=name.endswith(".pt"))
    img2, truth2, strokes2 = sample_2d()
    img3, truth3, _ = sample_3d()
    painted = (strokes2 > 0).mean() * 100
    print(f"napari-unet demo: training a 2D U-Net for {time_limit:.0f}s on the synthetic sample's "
          f"strokes ({painted:.1f}% of pixels painted)", flush=True)
    finished, _val = report_training(iter_train([img2], [strokes2], dims=2, time_limit=time_limit,
                                                device=resolve_device(device),
                                                checkpoint=out_dir / "model.pt"))
    if finished is None:  # pragma: no cover
        print("napari-unet: error: training produced no model", file=sys.stderr)
        return 1
    model = finished.model
    print(f"training finished ({finished.reason}) after {finished.step} steps. {finished.message}".strip())
    save_model(model, out_dir / "model.pt")

    held_out, held_truth, _ = make_nuclei((384, 384), seed=7)
    cases = [("nuclei2d", img2, truth2), ("heldout2d", held_out, held_truth), ("nuclei3d", img3, truth3)]
    for name, img, truth in cases:
        t0 = time.perf_counter()
        probs = predict(model, img, device=device)
        dt = time.perf_counter() - t0
        labels = probabilities_to_labels(probs)
        axes = "YX" if img.ndim == 2 else "ZYX"
        write_tiff(out_dir / f"{name}_probs.tif", probs, axes="C" + axes)
        write_tiff(out_dir / f"{name}_labels.tif", labels, axes=axes)
        write_tiff(out_dir / f"{name}_errors.tif", error_map(labels, truth), axes=axes)
        scores = evaluate(labels, truth, class_names=model.meta.get("class_names"))
        print(f"\n{name} {img.shape}: predicted in {dt:.1f}s ({img.size / dt / 1e6:.2f} Mpx/s)")
        print(format_scores(scores))
    print(f"\noutputs in {out_dir.resolve()}: model.pt, *_probs.tif, *_labels.tif, *_errors.tif")
    return 0
