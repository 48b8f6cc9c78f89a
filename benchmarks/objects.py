"""Object-level quality from sparse strokes: F1 at IoU 0.5 (and StarDist's AP) of napari-unet's
instances against true instance masks, next to simpler ways of getting objects.

Cases:
- BBBC039 U2OS nuclei (``../shared/data/real/bbbc039_u2os_nuclei``: widefield Hoechst, an
  instance mask of 110 nuclei), painted with the strokes of ``../shared/checks/quality-real``
  (a line through 30% of the nuclei, background lines >= 4 px from any nucleus);
- the synthetic 3D sample (``napari_unet.core.synthetic.sample_3d``: its own strokes, its
  instance truth).

Arms, all scored with ``core.objects.match_objects`` against the instance truth:
- ``napari-unet --instances``: ``napari-unet train --time-limit T`` on the strokes, then
  ``napari-unet predict --instances`` (seeded watershed on the U-Net's nucleus probability);
- ``napari-unet labels, connected components``: the same run's semantic labels, split only
  where they do not touch;
- ``Otsu + watershed``: ``core.instances.instance_labels`` on Otsu's mask (same parameters);
- ``Otsu, connected components``;
- ``(true foreground + watershed)``: the same watershed on the true foreground mask, i.e. what the
  splitting alone achieves with a perfect pixel classifier (a reference, not a method).

The 3D sample's nuclei are flattened in Z by 0.6 (anisotropic sampling), so its watershed runs
with ``spacing = (1.67, 1, 1)``. "fg IoU" is the foreground pixel IoU of each arm's objects.

The watershed parameters (``--seed-distance``, ``--min-size``, the spacing) are the same for every
arm; the defaults were picked on the Otsu arm of BBBC039 (nuclei ~14 px in radius).

Usage (CPU-heavy: about T + T3 seconds of training plus ~30 s)::

    python benchmarks/objects.py --time-limit 60 --time-limit-3d 30
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "real"


def bbbc_strokes(mask: np.ndarray) -> np.ndarray:
    """The stroke generator of ../shared/checks/quality-real (same seed)."""
    from scipy import ndimage as ndi

    fg = mask > 0
    rng = np.random.default_rng(1)
    lab = np.zeros(fg.shape, np.uint8)
    comp, n = ndi.label(fg)
    for i in rng.choice(np.arange(1, n + 1), max(1, int(0.3 * n)), replace=False):
        m = ndi.binary_erosion(comp == i, iterations=1)
        ys, xs = np.nonzero(m)
        if len(ys) < 5:
            continue
        ev, v = np.linalg.eigh(np.cov(np.stack([ys, xs])) + 1e-6 * np.eye(2))
        d = v[:, -1]
        h = 1.2 * np.sqrt(ev[-1])
        for t in np.linspace(-h, h, int(4 * h) + 2):
            y, x = int(round(ys.mean() + t * d[0])), int(round(xs.mean() + t * d[1]))
            sl = (slice(max(y - 1, 0), y + 2), slice(max(x - 1, 0), x + 2))
            lab[sl][m[sl]] = 2
    bg = ndi.binary_erosion(~fg, iterations=4)
    H, W = fg.shape
    for _ in range(max(5, int(0.3 * n))):
        y, x = rng.integers(0, H), rng.integers(0, W)
        a = rng.uniform(0, np.pi)
        for t in range(int(rng.integers(20, 41))):
            yy, xx = int(round(y + t * np.sin(a))), int(round(x + t * np.cos(a)))
            for o in (-1, 0, 1):
                if 0 <= yy + o < H and 0 <= xx < W and bg[yy + o, xx]:
                    lab[yy + o, xx] = 1
    return lab


def run_cli(*args: str) -> None:
    exe = Path(sys.executable).with_name("napari-unet")
    cmd = [str(exe) if exe.exists() else sys.executable, *([] if exe.exists() else ["-m", "napari_unet.cli"]), *args]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"{' '.join(args[:1])} failed: {out.stderr.strip().splitlines()[-1:]}")


def score(name: str, pred: np.ndarray, truth: np.ndarray, seconds: float | None = None) -> dict:
    from napari_unet.core.objects import match_objects

    r = match_objects(pred, truth, truth_kind="instance")
    r50 = r["thresholds"][0]
    fg, tfg = pred > 0, truth > 0
    return {"arm": name, "n_pred": r["n_pred"], "n_true": r["n_true"], "f1": r50["f1"],
            "iou": float((fg & tfg).sum() / max((fg | tfg).sum(), 1)),
            "precision": r50["precision"], "recall": r50["recall"], "ap50": r50["ap"],
            "map": r["mean_ap"], "splits": r["splits"], "merges": r["merges"], "s": seconds}


def case(name: str, img: np.ndarray, strokes: np.ndarray, truth: np.ndarray, *, time_limit: float,
         params: dict, work: Path) -> list[dict]:
    import tifffile
    from skimage.filters import threshold_otsu

    from napari_unet.core.instances import instance_labels
    from napari_unet.core.objects import as_objects

    d = work / name
    d.mkdir()
    tifffile.imwrite(d / "img.tif", img)
    tifffile.imwrite(d / "strokes.tif", strokes)
    t0 = time.perf_counter()
    run_cli("train", "--image", str(d / "img.tif"), "--labels", str(d / "strokes.tif"), "--device", "cpu",
            "--time-limit", str(time_limit), "--out", str(d / "m.pt"), "--quiet")
    t_train = time.perf_counter() - t0
    t0 = time.perf_counter()
    spacing = params.get("spacing")
    run_cli("predict", "--model", str(d / "m.pt"), "--device", "cpu", "--out-dir", str(d / "out"), "--quiet",
            "--instances", "--min-size", str(params["min_size"]), "--seed-distance", str(params["seed_distance"]),
            *(["--spacing", ",".join(map(str, spacing))] if spacing else []), str(d / "img.tif"))
    t_pred = time.perf_counter() - t0
    inst = tifffile.imread(d / "out" / "img_instances.tif")
    labels = tifffile.imread(d / "out" / "img_labels.tif")
    rows = [score("napari-unet --instances", inst, truth, t_train + t_pred),
            score("napari-unet labels, connected components", as_objects(labels, "semantic", 2), truth)]
    t0 = time.perf_counter()
    otsu = (img > threshold_otsu(img)).astype(np.float32)
    ws_kw = dict(seed_distance=params["seed_distance"], min_size=params["min_size"], spacing=spacing)
    ws = instance_labels(otsu, **ws_kw)
    rows.append(score("Otsu + watershed", ws, truth, time.perf_counter() - t0))
    rows.append(score("Otsu, connected components", as_objects(otsu.astype(np.uint8), "semantic"), truth))
    # the splitting alone: the same watershed on the true foreground (a perfect pixel classifier)
    rows.append(score("(true foreground + watershed)", instance_labels((truth > 0).astype(np.float32), **ws_kw),
                      truth))
    for r in rows:
        r["case"] = name
    print(f"{name}: trained {t_train:.0f} s, predicted + instances {t_pred:.1f} s", file=sys.stderr)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--time-limit", type=float, default=60.0, help="training seconds, BBBC039")
    ap.add_argument("--time-limit-3d", type=float, default=30.0, help="training seconds, 3D sample (0: skip)")
    ap.add_argument("--seed-distance", type=float, default=10.0)
    ap.add_argument("--min-size", type=int, default=20)
    args = ap.parse_args(argv)
    import tifffile

    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        img_path, mask_path = DATA / "bbbc039_u2os_nuclei_img.tif", DATA / "bbbc039_u2os_nuclei_mask.tif"
        if img_path.exists() and mask_path.exists():
            img, mask = tifffile.imread(img_path), tifffile.imread(mask_path)
            kind = "instance ids" if len(np.unique(mask)) > 2 else "binary (connected components)"
            print(f"BBBC039 mask: {int(mask.max())} max id, {len(np.unique(mask)) - 1} objects, {kind}",
                  file=sys.stderr)
            from napari_unet.core.objects import as_objects

            truth = as_objects(mask)  # instance ids as they are; a binary mask by components
            rows += case("BBBC039 nuclei (2D)", img, bbbc_strokes(mask), truth, time_limit=args.time_limit,
                         params={"seed_distance": args.seed_distance, "min_size": args.min_size}, work=work)
        else:
            print(f"skipping BBBC039: {DATA} has no bbbc039_u2os_nuclei_*.tif", file=sys.stderr)
        if args.time_limit_3d > 0:
            from napari_unet.core.synthetic import make_nuclei, make_strokes

            img, sem, inst = make_nuclei((24, 192, 192), seed=1, radius=(7.0, 12.0))
            strokes = make_strokes(sem, inst, seed=1, plane_step=4)
            rows += case("synthetic 3D sample", img, strokes, inst, time_limit=args.time_limit_3d,
                         params={"seed_distance": 6.0, "min_size": 50, "spacing": (1.67, 1.0, 1.0)}, work=work)
    print("| case | method | objects (true) | F1 @0.5 | precision | recall | AP @0.5 | mean AP 0.5:0.95 | splits | merges | fg IoU |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['case']} | {r['arm']} | {r['n_pred']} ({r['n_true']}) | {r['f1']:.3f} | {r['precision']:.3f} | "
              f"{r['recall']:.3f} | {r['ap50']:.3f} | {r['map']:.3f} | {r['splits']} | {r['merges']} | {r['iou']:.3f} |")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    sys.exit(main())
