"""Continuing with nothing new painted: does keep-better keep the right weights?

For each image: the interactive simulation's first strokes
(``quality_interactive.first_strokes``), ``--round0`` fixed steps; its corrections
(``strokes.corrections``), ``--round1`` steps from that model; then, from the round-1 model,
one continuation per training seed on the **same** strokes (``--steps`` steps,
``keep_better=True``). Each continuation scores both weights against the truth (the kept one
and the one set aside, ``TrainFinished.discarded``) and records what keep-better saw of each on
all the paint: the fit to the strokes (mean IoU), the mirror agreement
(``Validation.agreement``) and the edge flux (``calibration.region_flux``). One markdown row
per continuation, then how often the rule took worse or set aside better weights.

Fixed steps and one thread, so the figures do not depend on the machine's load. ~5 min per
image with the defaults on this machine's CPU. Usage (from the repository root)::

    python benchmarks/quality_continue.py bbbc039 bbbc039-phase em --seeds 0,1,2
    python benchmarks/quality_continue.py bbbc039-3class --stroke-seed 2 --round0 400
    NAPARI_UNET_STEADY_GAIN=0 python benchmarks/quality_continue.py bbbc039-phase   # the rule before
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import strokes as S
from quality_interactive import first_strokes
from quality_methods import load_image, ours, predicted_labels, score

ROOT = Path(__file__).resolve().parents[1]


def _record_signals(seen: dict) -> None:
    """Wrap keep-better so that it first scores both weights the way it sees them (into
    ``seen``: 'new' and 'old', each fit / agreement / flux), then decides as it always does."""
    from napari_unet.core.train.validation import ValidationMixin

    decide = ValidationMixin._keep_better

    def recording(self, step):
        model = self.p.model
        trained = {k: t.detach().clone() for k, t in model.state_dict().items()}
        evidence = self._flux_evidence()

        def signals():
            v = self._validate(step, self.paintset)
            return dict(fit=float(v.mean_iou), agreement=float(v.agreement),
                        flux=self._region_flux(evidence))
        seen["new"] = signals()
        model.load_state_dict(self.start_state)
        seen["old"] = signals()
        model.load_state_dict(trained)
        return decide(self, step)

    ValidationMixin._keep_better = recording


def continuations(name: str, data: Path, seeds: list[int], *, round0: int, round1: int, steps: int,
                  stroke_seed: int, log=None) -> list[dict]:
    import napari_unet

    log = log or (lambda *a: print(*a, flush=True))
    im = load_image(name, data)
    if im.truth.ndim != 2:
        raise SystemExit(f"{name}: 2D images only")

    def iou_of(model):
        return score(predicted_labels(model, im.img, im.options.get("channel_axis"))[0], im.truth)

    strokes = first_strokes(im, stroke_seed)
    r0 = ours(im.img, strokes, dims=2, steps=round0, seed=0, **im.options)
    strokes, _ = S.corrections(r0.labels, im.truth, strokes, n=8)
    r1 = ours(im.img, strokes, dims=2, steps=round1, init=r0.model, seed=0, **im.options)
    start = score(r1.labels, im.truth)
    log(f"[{name}] round 0 {score(r0.labels, im.truth):.3f}, round 1 {start:.3f}")
    rows, seen = [], {}
    _record_signals(seen)
    for seed in seeds:
        seen.clear()
        last = None
        for ev in napari_unet.iter_train(im.img, strokes, dims=2, steps=steps, device="cpu", seed=seed,
                                         init=r1.model, keep_better=True, **im.options):
            last = ev
        if last.kept_previous:
            new = iou_of(last.discarded) if last.discarded is not None else float("nan")
        else:
            new = iou_of(last.model)
        n, o = seen.get("new"), seen.get("old")
        flux = (n["flux"] / o["flux"] - 1) if n and o and n["flux"] and o["flux"] else float("nan")
        rows.append(dict(image=name, seed=seed, previous=start, new=new, kept_previous=bool(last.kept_previous),
                         fit=(n["fit"] - o["fit"]) if n else float("nan"), flux=flux,
                         agreement=(n["agreement"] - o["agreement"]) if n else float("nan"),
                         message=last.detail))
        log(f"[{name}] seed {seed}: previous {start:.3f}, new {new:.3f}, "
            f"{'kept the previous' if last.kept_previous else 'took the new'} ({last.detail})")
    return rows


def table(rows: list[dict]) -> list[str]:
    out = ["| image | seed | previous | new | change | fit to the paint | edge flux | mirror agreement | kept |",
           "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['image']} | {r['seed']} | {r['previous']:.3f} | {r['new']:.3f} "
                   f"| {r['new'] - r['previous']:+.3f} | {r['fit']:+.3f} | {100 * r['flux']:+.1f}% "
                   f"| {r['agreement']:+.4f} | {'previous' if r['kept_previous'] else 'new'} |")
    took_worse = [r for r in rows if not r["kept_previous"] and r["new"] < r["previous"]]
    set_aside = [r for r in rows if r["kept_previous"] and r["new"] > r["previous"]]
    better = [r for r in rows if r["new"] > r["previous"]]
    out += ["", f"- {len(rows)} continuations; the new weights were better in {len(better)}",
            f"- took worse weights: {len(took_worse)}"
            + (f" (worst {min(r['new'] - r['previous'] for r in took_worse):+.3f})" if took_worse else ""),
            f"- set better weights aside: {len(set_aside)}"
            + (f" (up to {max(r['new'] - r['previous'] for r in set_aside):+.3f})" if set_aside else "")]
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("images", nargs="+", help="image names as in quality.py --list (2D), e.g. bbbc039-phase")
    ap.add_argument("--seeds", default="0,1,2", help="training seeds of the continuations")
    ap.add_argument("--stroke-seed", type=int, default=1, help="seed of the first strokes (the simulation's: 1)")
    ap.add_argument("--round0", type=int, default=300)
    ap.add_argument("--round1", type=int, default=250)
    ap.add_argument("--steps", type=int, default=250, help="steps of each continuation")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "real")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = []
    for name in args.images:
        rows += continuations(name, args.data, seeds, round0=args.round0, round1=args.round1,
                              steps=args.steps, stroke_seed=args.stroke_seed)
    print("\n".join(table(rows)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
