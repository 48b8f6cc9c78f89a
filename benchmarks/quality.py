"""Segmentation quality from a few strokes on real microscopy: ours vs Otsu vs a random forest
vs the dense-label ceiling (issue 9).

Images (``--data``, default ``../shared/data/real`` next to the repository):
BBBC039 U2OS nuclei (fluorescence; also split into dim/bright nuclei as a 3-class case), ISBI
2012 EM (class 2 = membrane, a thin network), the PlantSeg ovule stack (3D, class 2 = cell
boundary: voxels whose 3x3x3 neighbourhood holds another cell), and the synthetic 2D/3D nuclei
of ``napari_unet.core.synthetic``; and BBBC039 rendered as H&E brightfield (RGB) and as phase
contrast (``renderings.py``): proxies for those modalities, so information rows; and a real
IHC image of glands (scikit-image's, RGB) whose truth comes from colour deconvolution
(``quality_methods._ihc_tissue``): also information.

Strokes (``benchmarks/strokes.py``, seeded): ``lines-mN`` (a line along 30% of the objects or
skeleton segments of a thin class, background lines kept N px from any object, N = 2, 4, 8),
``blobs`` (disks in object interiors, a few far background disks), ``planes-m4`` (stacks painted
on every 6th plane, lines in each; ``planes-m4-everyK``: every K-th, for ``--image`` stacks of a
few planes, where every 6th paints one). Painted % is in the table.

Methods on the same strokes: Otsu's threshold (multi-Otsu for 3 classes; polarity chosen from
the strokes), scikit-image's random forest (``fit_segmenter`` on ``multiscale_basic_features``,
n_estimators=50, max_depth=10, max_samples=0.05), ours (``napari_unet.iter_train`` with its
defaults, ``--time-limit`` s on the CPU, then ``predict``; argmax + 1), and the ceiling: the
same training for the same time on the dense truth (every pixel painted), once per image.
Score: foreground IoU (class 2; the mean over classes 2..K for more classes) on the whole image.
A case passes (issue 9) when ours >= min(best classical + 0.05, ceiling - 0.02); ``dims=2`` rows
on stacks are information only. The interactive simulation is in ``quality_interactive.py``.

Usage (from the repository root)::

    python benchmarks/quality.py                    # the full run, writes docs/quality_run.md:
                                                    # 20 cases + a ceiling per image, 120 s
                                                    # each, 4 interactive rounds of 40 s: ~65 min
                                                    # on 2 idle cores
    python benchmarks/quality.py --quick --only bbbc039/lines-m4
    python benchmarks/quality.py --only em,bbbc039/interactive --time-limit 60
    python benchmarks/quality.py --image cells.tif --mask cells_mask.tif   # your own image, the
                                                    # same way (lines-m4; stacks: planes-m4)
    python benchmarks/quality.py --probes --only 'bbbc039-lowlight,bbbc039-shading,bbbc039-zoom*,bbbc039-dic' --out /tmp/p.md
                                                    # BBBC039 under other acquisitions and as
                                                    # DIC (renderings.py; information rows)
"""
from __future__ import annotations

import argparse
import datetime
import fnmatch
import json
import re
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import strokes as S
from quality_methods import PROBES, REAL_FILES, custom_image, load_image, otsu, ours, random_forest, rf_features, score

ROOT = Path(__file__).resolve().parents[1]
# the first line of every report this script writes: a file named by --out that does not start
# with it (docs/quality.md, the curated history, or any file of yours) is never replaced
REPORT_MARK = "<!-- written by benchmarks/quality.py; a run that names this file replaces it -->"


@dataclass
class Case:
    image: str
    style: str           # "lines-m2", "blobs", "planes-m4", "interactive"
    dims: int = 2
    counted: bool = True  # False: an information row (not in pass/fail or the median)
    tag: str = ""         # added to the id, e.g. "-dims2"

    @property
    def id(self) -> str:
        return f"{self.image}/{self.style}{self.tag}"

    @property
    def has_ceiling(self) -> bool:
        """Trained on the dense truth too (not the interactive simulation, nor the dims=2 rows
        of a stack, which have no ceiling of their own)."""
        return (self.counted or not self.tag) and self.style != "interactive"


def all_cases(quick: bool, probes: bool = False) -> list[Case]:
    margins = (4,) if quick else (2, 4, 8)
    cases = []
    for name in ("bbbc039", "em", "synth2d"):
        cases += [Case(name, f"lines-m{m}") for m in margins] + [Case(name, "blobs")]
    cases.append(Case("bbbc039-3class", "lines-m4"))
    for name in ("ovule3d", "synth3d"):
        cases.append(Case(name, "planes-m4", dims=3))
        if not quick:
            cases.append(Case(name, "planes-m4", dims=2, counted=False, tag="-dims2"))
    # other modalities rendered from BBBC039 (renderings.py): proxies, so information rows
    cases += [Case(name, "lines-m4", counted=False) for name in ("bbbc039-he", "bbbc039-phase")]
    # a real RGB histology image with a proxy truth (quality_methods._ihc_tissue): information
    cases.append(Case("ihc", "lines-m4", counted=False))
    if probes:   # BBBC039 under other acquisitions, and as DIC (renderings.py): information rows
        cases += [Case(name, "lines-m4", counted=False) for name in PROBES]
    cases.append(Case("bbbc039", "interactive"))
    return cases


def select(cases: list[Case], only: str | None, interactive: bool) -> list[Case]:
    if interactive:  # an interactive case for every 2D image
        seen = [c.image for c in cases if c.dims == 2 and c.counted]
        cases = cases + [Case(n, "interactive") for n in dict.fromkeys(seen)
                         if not any(c.image == n and c.style == "interactive" for c in cases)]
    if not only:
        return cases
    pats = [p.strip() for p in only.split(",") if p.strip()]
    return [c for c in cases if any(p in (c.image, c.style, c.id) or fnmatch.fnmatch(c.id, p)
                                    for p in pats)]


# a stack's stroke style: margin N, and every K-th plane painted (default 6, issue 9; a stack of a
# few planes gets more than one painted plane with a smaller K)
PLANES_STYLE = re.compile(r"planes-m(\d+)(?:-every([1-9]\d*))?")


def make_strokes(im, style: str, seed: int = 1) -> np.ndarray:
    kw = dict(instances=im.instances, thin=im.thin)
    if style.startswith("lines-m"):
        return S.lines(im.truth, seed, margin=int(style[7:]), **kw)
    if style == "blobs":
        return S.blobs(im.truth, seed, **kw)
    m = PLANES_STYLE.fullmatch(style)
    if m:
        return S.planes(im.truth, seed, step=int(m[2] or 6), margin=int(m[1]), **kw)
    raise ValueError(style)


def custom_style(stack: bool, style: str | None) -> str:
    """The stroke style for your own image or stack (``--image``): ``style``, or lines-m4 for a
    2D image and planes-m4 for a stack; ValueError naming the problem for a style that is not one
    or does not fit the data."""
    style = style or ("planes-m4" if stack else "lines-m4")
    if not (re.fullmatch(r"lines-m\d+|blobs", style) or PLANES_STYLE.fullmatch(style)):
        raise ValueError(f"--style {style}: lines-mN, blobs, planes-mN or planes-mN-everyK")
    if stack != style.startswith("planes-m"):
        raise ValueError(f"--style {style} is for {'2D images' if stack else 'stacks'}")
    return style


def fmt(x, signed=False) -> str:
    if x is None or (isinstance(x, float) and np.isnan(x)):
        return "n/a"
    return f"{x:+.3f}" if signed else f"{x:.3f}"


def _not_a_report(path: Path | None, what: str) -> str:
    """Why ``path`` must not be written (it exists and this script did not write it), or ""."""
    if path is None or not path.exists():
        return ""
    if not path.is_file():
        return f"{what} {path} is not a file"
    try:   # a report's JSON is read whole; of a markdown file, only its first line counts
        with open(path, encoding="utf-8") as f:
            text = f.read() if what == "--json" else f.read(4096)
    except (OSError, UnicodeDecodeError) as e:
        return f"{what} {path} cannot be read back to check that this script wrote it ({e})"
    if what == "--json":
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        ours = isinstance(data, dict) and "rows" in data
    else:
        ours = text.split("\n", 1)[0].strip() == REPORT_MARK
    if ours:
        return ""
    return (f"{what} {path} exists and was not written by this script"
            + (" (docs/quality.md is the curated history; a full run writes docs/quality_run.md)"
               if path.resolve() == (ROOT / "docs" / "quality.md").resolve() else "")
            + ": name a new file, or remove that one first")


def _write(path: Path, text: str) -> None:
    """Replace ``path`` in one step: a stopped run leaves the last whole report, never half of one."""
    from napari_unet.core.io import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def report(rows, sims, args, elapsed, partial: bool) -> str:
    from _common import machine

    out = ["# Quality from a few strokes (benchmarks/quality.py)", "",
           f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, "
           f"`python benchmarks/quality.py {' '.join(sys.argv[1:])}`"
           + (" (partial: still running)" if partial else f", {elapsed / 60:.0f} min"), "",
           f"Machine: {machine()}."]
    if rows:   # (an interactive-only run has none)
        out += ["", f"Ours and the ceiling: {args.time_limit:.0f} s of CPU training each ({args.threads} "
                "torch threads), library defaults. Foreground IoU on the whole image (mean over "
                "classes 2..K for 3 classes). Pass: ours >= min(best classical + 0.05, ceiling - 0.02).",
                "", "| case | painted % | Otsu | RF | ours | ceiling | ours - best classical "
                "| ours - ceiling | pass |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            out.append(f"| {r['case']} | error: {r['error']} |||||||")
            continue
        best = max(r["otsu"], r["rf"])
        ceil = r.get("ceiling")
        gap = None if ceil is None else r["ours"] - ceil
        ok = "yes" if r.get("pass") else ("n/a" if "pass" not in r else "**NO**")
        ok = ok if r["counted"] else f"info ({ok})"
        out.append(f"| {r['case']} | {r['painted_pct']:.2f}% | {fmt(r['otsu'])} | {fmt(r['rf'])} | "
                   f"**{fmt(r['ours'])}** | {fmt(ceil)} | {fmt(r['ours'] - best, True)} | "
                   f"{fmt(gap, True)} | {ok} |")
    counted = [r for r in rows if r.get("counted") and "error" not in r]
    if counted:
        gaps = [r["ceiling"] - r["ours"] for r in counted]
        med = statistics.median(gaps)
        out += ["", f"- cases passing: {sum(r['pass'] for r in counted)}/{len(counted)}",
                f"- median gap to the ceiling: {med:.3f} ({'within' if med <= 0.05 else 'NOT within'} 0.05)"]
    per_object = [r for r in rows if "ours_per_object" in r]
    if per_object:
        out += ["", "More than two classes: the labels class by pixel (argmax) and object by object "
                "(Predict's \"one class per object\"); *ours* is the one training chose from the paint "
                "(each painted object of one class: object by object): " + "; ".join(
                    f"{r['case']} {fmt(r['ours_per_pixel'])} / {fmt(r['ours_per_object'])} "
                    f"({'object' if r['per_object_chosen'] else 'pixel'} chosen)" for r in per_object)]
    if rows:
        out += ["", "Training steps (ours / ceiling): " + "; ".join(
            f"{r['case']} {r['steps']}/{r.get('ceiling_steps', 'n/a')}" for r in rows if "error" not in r)]
    from quality_interactive import table

    for name, sim in sims:
        out += [""] + table(name, sim)
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "real",
                    help="folder of the real images (default ../shared/data/real)")
    ap.add_argument("--time-limit", type=float, default=None,
                    help="seconds of training for ours and the ceiling (default 120, --quick 20)")
    ap.add_argument("--round-time", type=float, default=None,
                    help="seconds of training per interactive round (default 40, --quick 10)")
    ap.add_argument("--round-steps", type=int, default=None,
                    help="train a fixed number of steps per interactive round instead of --round-time "
                         "(load-independent figures, e.g. 280: about 40 s on an idle 2-core machine)")
    ap.add_argument("--seed", type=int, default=0, help="training seed of the interactive simulation")
    ap.add_argument("--rounds", type=int, default=None, help="correction rounds (default 3, --quick 2)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: 20 s, margin 4 only, cropped images, no dims=2 info rows")
    ap.add_argument("--only", help="comma-separated cases, images, styles or globs, "
                    "e.g. bbbc039,em/lines-m4,*/blobs,bbbc039/interactive")
    ap.add_argument("--interactive", action="store_true",
                    help="also run the interactive simulation on every selected 2D image "
                         "(it runs on BBBC039 by default)")
    ap.add_argument("--threads", type=int, default=2, help="torch and random-forest threads (default 2)")
    ap.add_argument("--out", type=Path, default=None,
                    help="markdown file (default docs/quality_run.md for a full run; none for --quick/--only/--image); "
                         "an existing file is replaced only if this script wrote it")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    ap.add_argument("--probes", action="store_true",
                    help="also BBBC039 under other acquisitions (few photons, uneven light, twice and "
                         "half and a third of the magnification, each nucleus at its own brightness), as DIC "
                         "and as phase contrast at twice the magnification; information rows, ~5 min each")
    ap.add_argument("--image", type=Path, help="your own image (TIFF, PNG, ...) instead of the benchmark's: "
                    "checked the same way against --mask")
    ap.add_argument("--mask", type=Path, help="its truth (TIFF, PNG, ...; 0 = background, objects > 0)")
    ap.add_argument("--channel-axis", type=int, default=None, help="the --image's channel axis (e.g. -1 for RGB; "
                    "default: the axis the mask lacks, if exactly one fits)")
    ap.add_argument("--style", default=None,
                    help="strokes for --image: lines-m2/m4/m8, blobs (2D; default lines-m4) or planes-m4 "
                         "(stacks; their default: every 6th plane; planes-m4-every2: every 2nd)")
    ap.add_argument("--list", action="store_true", help="list the cases and exit")
    args = ap.parse_args(argv)
    args.time_limit = args.time_limit or (20.0 if args.quick else 120.0)
    args.round_time = args.round_time or (10.0 if args.quick else 40.0)
    args.rounds = args.rounds if args.rounds is not None else (2 if args.quick else 3)
    if args.out is None and not (args.quick or args.only or args.image or args.mask):
        args.out = ROOT / "docs" / "quality_run.md"
    for path, what in ((args.out, "--out"), (args.json, "--json")):
        problem = _not_a_report(path, what)
        if problem:
            ap.error(problem)
    custom = None
    if args.image or args.mask:
        if not (args.image and args.mask):
            ap.error("--image and --mask go together")
        try:
            custom = custom_image(args.image, args.mask, args.channel_axis)
            stack = custom.truth.ndim == 3
            style = custom_style(stack, args.style)
        except (OSError, ValueError) as e:
            ap.error(str(e))
        cases = [Case("custom", style, dims=3 if stack else 2)]
        if args.interactive:
            if stack:
                ap.error("--interactive paints 2D images only; --image is a stack")
            cases.append(Case("custom", "interactive"))
    else:
        cases = select(all_cases(args.quick, args.probes), args.only, args.interactive)
    if args.list or not cases:
        print("\n".join(c.id for c in all_cases(False, args.probes)) if not cases
              else "\n".join(c.id for c in cases))
        return 0 if cases else 2
    real = {c.image.split("-")[0] for c in cases} & set(REAL_FILES)
    missing = [str(args.data / f"{REAL_FILES[n]}_{k}.tif") for n in sorted(real) for k in ("img", "mask")
               if not (args.data / f"{REAL_FILES[n]}_{k}.tif").is_file()]
    if missing:
        print(f"quality.py: error: real data missing: {', '.join(missing)} (give the folder with "
              f"--data, or pick synthetic cases with --only synth2d,synth3d)", file=sys.stderr)
        return 2

    import torch

    torch.set_num_threads(args.threads)
    trainings = sum((args.rounds + 1) * args.round_time if c.style == "interactive" else args.time_limit
                    for c in cases)
    ceilings = {(c.image, c.dims) for c in cases if c.has_ceiling}
    trainings += len(ceilings) * args.time_limit
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    log(f"{len(cases)} cases: {', '.join(c.id for c in cases)}; about {trainings / 60:.0f} min of "
        f"training plus random forests and predictions")

    t_start = time.perf_counter()
    images, feats, ceil_cache, rows, sims = ({} if custom is None else {"custom": custom}), {}, {}, [], []

    def flush(partial):
        text = report(rows, sims, args, time.perf_counter() - t_start, partial)
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            _write(args.out, f"{REPORT_MARK}\n{text}")   # the mark: the file's, not the report's
        if args.json:
            _write(args.json, json.dumps({"rows": rows, "interactive": dict(sims)}, indent=1))
        return text

    for case in cases:
        try:
            if case.image not in images:
                images[case.image] = load_image(case.image, args.data, args.quick)
            im = images[case.image]
            if case.style == "interactive":
                from quality_interactive import simulate

                sims.append((im.title, simulate(im, round_time=args.round_time, rounds=args.rounds,
                                                round_steps=args.round_steps, train_seed=args.seed,
                                                log=log)))
                flush(True)
                continue
            st = make_strokes(im, case.style)
            row = dict(case=case.id, counted=case.counted, painted_pct=100.0 * np.count_nonzero(st) / st.size)
            t = time.perf_counter()
            row["otsu"] = score(otsu(im.img, st, im.classes, im.channel_axis), im.truth)
            if case.image not in feats:
                feats[case.image] = rf_features(im.img, im.channel_axis)
            row["rf"] = score(random_forest(feats[case.image], st, args.threads), im.truth)
            log(f"[{case.id}] painted {row['painted_pct']:.2f}%: Otsu {row['otsu']:.3f}, "
                f"RF {row['rf']:.3f} ({time.perf_counter() - t:.0f} s)")
            run = ours(im.img, st, dims=case.dims, time_limit=args.time_limit, **im.options)
            row.update(ours=score(run.labels, im.truth), steps=run.steps)
            log(f"[{case.id}] ours {row['ours']:.3f} ({run.steps} steps in {run.seconds:.0f} s)")
            if im.classes > 2:   # the same run's labels class by pixel and object by object
                from napari_unet import probabilities_to_labels

                row["per_object_chosen"] = bool(run.model.meta.get("one_class_per_object"))
                row["ours_per_pixel"] = score(probabilities_to_labels(run.probs), im.truth)
                row["ours_per_object"] = score(probabilities_to_labels(run.probs, one_class_per_object=True), im.truth)
                log(f"[{case.id}] one class per object {'chosen' if row['per_object_chosen'] else 'not chosen'} "
                    f"from the paint; per pixel {row['ours_per_pixel']:.3f}, per object {row['ours_per_object']:.3f}")
            if case.has_ceiling:
                key = (case.image, case.dims)
                if key not in ceil_cache:
                    dense = ours(im.img, im.truth, dims=case.dims, time_limit=args.time_limit,
                                 **im.options)
                    ceil_cache[key] = (score(dense.labels, im.truth), dense.steps)
                    log(f"[{case.image}] ceiling (dense, dims={case.dims}) {ceil_cache[key][0]:.3f} "
                        f"({dense.steps} steps)")
                row["ceiling"], row["ceiling_steps"] = ceil_cache[key]
                # (never under 0: a ceiling trained too briefly to find any object scores ~0)
                bar = max(0.0, min(max(row["otsu"], row["rf"]) + 0.05, row["ceiling"] - 0.02))
                row.update(bar=bar, **{"pass": bool(row["ours"] >= bar)})
            rows.append(row)
        except Exception as e:  # one broken case must not lose the others
            log(f"[{case.id}] failed: {type(e).__name__}: {e}")
            rows.append(dict(case=case.id, error=f"{type(e).__name__}: {e}"))
        flush(True)
    print(flush(False))
    if args.out:
        log(f"written {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
