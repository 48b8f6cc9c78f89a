"""``napari-unet predict``: its options, and the in-memory TIFF path, which runs the plugin's
prediction job (core.jobs.iter_predict_job) over the files; zarr/HDF5 inputs, OME-Zarr outputs
and dask workers go to the block engine (_cli_bigdata.py -> core.distributed).

A user's mistake is a UserError (one line, exit 2: _cli_run.py); every output is checked
before anything is predicted, and files are written under a temporary name and renamed.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ._cli_args import _batch_arg, _existing_file, _spacing_arg, _threshold_arg, _tile_arg, check_instance_options, \
    predict_channel_axis
from ._cli_report import ProgressBar
from .core.errors import UserError


def add_predict_parser(sub) -> None:
    p = sub.add_parser("predict", help="segment images with a trained model",
                       description="Writes DIR/<stem>_probs.tif (float32, classes first) and DIR/<stem>_labels.tif.")
    p.add_argument("--model", required=True, help="model file (.pt) from 'napari-unet train' or the plugin, "
                                                  "or a bioimage.io package from 'napari-unet export'")
    p.add_argument("--out-dir", required=True, help="folder for the outputs (created if missing)")
    p.add_argument("--tile", type=_tile_arg, default="auto",
                   help="tile core size: auto (from free memory), none or 0 (the whole image in one pass), "
                        "N, or ZxYxX; every size gives the same result")
    p.add_argument("--batch-size", type=_batch_arg, default="auto",
                   help="tiles per forward pass: auto (from free memory) or N")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"),
                   help="where to compute: auto (a CUDA or Apple GPU if there is one, else the CPU), cpu, cuda or mps")
    p.add_argument("--channel-axis", type=int, default=None, help="axis holding channels, for multi-channel models")
    p.add_argument("--threshold", type=_threshold_arg, default=None,
                   help="two-class models: foreground where its probability >= this (default: argmax)")
    p.add_argument("--one-class-per-object", action=argparse.BooleanOptionalAction, default=None,
                   help="models of more than two classes whose classes are kinds of object (e.g. dim and "
                        "bright nuclei): each connected object in the labels takes one class, the one with "
                        "the most probability over it. Not for classes that are parts of one object "
                        "(nucleus and cytoplasm): touching, they would become one class. Default: what the "
                        "model's training found in the paint (each painted object of one class: on)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    g = p.add_argument_group("objects (instance labels)")
    g.add_argument("--instances", action="store_true",
                   help="also write DIR/<stem>_instances.tif (with --format ome-zarr: labels/instances/0 in the "
                        "store): touching objects of the foreground class split by a seeded watershed "
                        "(uint16/uint32, 0 = background)")
    g.add_argument("--instance-class", type=int, default=None,
                   help="class value to split into objects (default 2, the first after background)")
    g.add_argument("--min-size", type=int, default=None, help="smallest object kept, in pixels/voxels (default 10)")
    g.add_argument("--seed-distance", type=float, default=None,
                   help="smallest distance between two objects' centres, in --spacing units (default 5)")
    g.add_argument("--spacing", type=_spacing_arg, default=None,
                   help="pixel/voxel size per axis, e.g. 2,0.5,0.5 (ZYX), for --seed-distance and --measure "
                        "(default: the pixel size recorded in the image, else 1)")
    g.add_argument("--measure", action="store_true",
                   help="with --instances: also DIR/<stem>_objects.csv, one row per object (size in --spacing "
                        "units, mean intensity, centroid, bounding box, class)")
    p.add_argument("--overwrite", action="store_true",
                   help="allow replacing existing output files that napari-unet did not write (inputs never are)")
    p.add_argument("images", nargs="+", metavar="IMAGE",
                   help="TIFF files or folders of them (outputs of napari-unet in them are skipped), "
                        ".zarr/.ome.zarr stores, or file.h5:dataset (read lazily)")
    from ._cli_bigdata import add_bigdata_args

    add_bigdata_args(p)
    p.set_defaults(func=cmd_predict)


def _stem(path: Path) -> str:
    name = path.name
    for suf in (".ome.tiff", ".ome.tif", ".tiff", ".tif"):
        if name.lower().endswith(suf):
            return name[: -len(suf)]
    return path.stem


def _model_suggests_per_object(path) -> bool:
    from .core.io import read_model_meta
    from .core.postprocess import suggests_one_class_per_object

    try:
        return suggests_one_class_per_object(read_model_meta(Path(path)))
    except Exception:   # a missing or damaged model fails with its own message further on
        return False


# block-wise prediction (_cli_bigdata.wants_bigdata), which --chunk sizes
_BLOCKWISE = "--format ome-zarr (or zarr/HDF5 inputs, --workers, --scheduler, --cluster: block-wise prediction)"
# options that only act with another one: (attribute, its flag, the option it needs, default)
_BELONGS_TO = (("instance_class", "--instance-class", "--instances", None),
               ("min_size", "--min-size", "--instances", 10),
               ("seed_distance", "--seed-distance", "--instances", 5.0),
               ("spacing", "--spacing", "--instances", None),
               ("ngff_version", "--ngff-version", "--format ome-zarr", "0.5"),
               ("jobs", "--jobs", "--cluster", 1),
               ("cluster_option", "--cluster-option", "--cluster", []),
               ("chunk", "--chunk", _BLOCKWISE, "auto"))


def check_option_pairs(args) -> None:
    """Refuse an option given without the one it belongs to (it would be silently ignored), then
    fill in the defaults of those left out."""
    from ._cli_bigdata import wants_bigdata

    active = {"--instances": bool(args.instances), "--format ome-zarr": args.format == "ome-zarr",
              "--cluster": args.cluster is not None, _BLOCKWISE: wants_bigdata(args)}
    for attr, flag, needs, default in _BELONGS_TO:
        value = getattr(args, attr)
        if value is not None and value != [] and not active[needs]:
            raise UserError(f"{flag} applies to {needs} only: give {needs} too, or leave {flag} out")
        if value is None:
            setattr(args, attr, default)


def cmd_predict(args) -> int:
    from ._cli_bigdata import predict_bigdata, wants_bigdata
    from .core.io import load_model

    check_option_pairs(args)
    if wants_bigdata(args):  # zarr/HDF5 inputs, --format ome-zarr, --workers/--scheduler/--cluster
        if args.one_class_per_object:
            raise UserError("--one-class-per-object needs the whole labels in memory; it is not available "
                            "with zarr/HDF5 inputs, --format ome-zarr or dask workers")
        if args.one_class_per_object is None and _model_suggests_per_object(args.model):
            print("note: this model gives each object one class where it can (its paint held one class "
                  "per object); block-wise outputs keep the class of each pixel", file=sys.stderr)
        return predict_bigdata(args)
    from .core.outputs import check_output, expand_inputs, prepare_folder
    from .core.predict import check_threshold

    model_path = _existing_file(args.model, "model file")
    images, skipped = expand_inputs(args.images)
    for p in skipped:
        print(f"skipping {p}: an output of napari-unet, not an input image", file=sys.stderr)
    out_dir = Path(args.out_dir)
    stems = [_stem(p) for p in images]
    dup = {s for s in stems if stems.count(s) > 1}
    if dup:
        raise UserError(f"several images share the name {sorted(dup)[0]!r}; their outputs would overwrite each other")
    suffixes = ("_probs.tif", "_labels.tif") + (("_instances.tif",) if args.instances else ())
    for s in stems:  # every output is checked before anything is predicted
        for suf in suffixes:
            check_output(out_dir / f"{s}{suf}", inputs=images + [model_path], overwrite=args.overwrite)
    prepare_folder(out_dir, what="--out-dir")
    from .core.io import read_image

    from .core.frames import is_time_lapse

    # a damaged or truncated file fails now, not after the others are done
    from .core.checks import check_finite

    shapes = []
    for p in images:   # and a NaN is named by its file (the engine only knows "image")
        data = read_image(p)
        check_finite(data, name=p.name)
        shapes.append(tuple(data.shape))
    model = load_model(model_path)
    if args.channel_axis is None:
        args.channel_axis = predict_channel_axis(shapes, model.meta, [p.name for p in images])
    for p, shape in zip(images, shapes):
        if is_time_lapse(shape, args.channel_axis) and args.instances:
            raise UserError(f"--instances is not available for a time-lapse ({p.name}) yet")
    check_threshold(args.threshold, model.meta["classes"])
    if args.one_class_per_object is None:   # the model's own choice (its training looked at the paint)
        from .core.postprocess import suggests_one_class_per_object

        args.one_class_per_object = "auto"
        if args.threshold is None and suggests_one_class_per_object(model.meta):
            print(f"{model_path.name}: each painted object held one class, so each object takes one class "
                  "(--no-one-class-per-object: the class of each pixel)", file=sys.stderr)
    if args.one_class_per_object is True and model.meta["classes"] <= 2:
        raise UserError(f"--one-class-per-object is for models of more than two classes; {model_path.name} "
                        f"has {model.meta['classes']}")
    if args.measure and not args.instances:
        raise UserError("--measure measures the objects of --instances: give both")
    if args.instances:
        from .core.instance_outputs import foreground_index

        foreground_index(model.meta, args.instance_class)  # a wrong class fails before predicting
        check_instance_options(args, images, shapes)
    from .core.device import describe_device, resolve_device

    dev = resolve_device(args.device)
    # said once the first image passed its checks (a NaN, a wrong --channel-axis: the error alone)
    announce = (f"model {model_path.name}: {model.meta['dims']}D, {model.meta['classes']} classes; "
                f"device {describe_device(dev)}")
    out_dir.mkdir(parents=True, exist_ok=True)
    from .core.jobs import Progress, iter_predict_job

    # the plugin's prediction job: files in, outputs by its policy (free space, atomic TIFFs,
    # straight into memory-mapped files when larger than RAM); Ctrl-C/SIGTERM raise in here
    job = iter_predict_job(model, [(p.name, p) for p in images], tile=args.tile, batch_size=args.batch_size,
                           device=dev, channel_axis=args.channel_axis, threshold=args.threshold,
                           uncertainty=False, out_dir=out_dir, stems={p.name: _stem(p) for p in images},
                           keep_arrays=False, out_what="--out-dir",
                           one_class_per_object=args.one_class_per_object)
    by_name = {p.name: p for p in images}
    bar, t0 = None, time.perf_counter()
    for ev in job:
        if announce:
            print(announce, file=sys.stderr)
            announce = ""
        if isinstance(ev, Progress):
            if bar is None and not args.quiet:
                bar = ProgressBar(ev.image)
            if bar is not None:
                bar.update(ev.done, ev.total, f"tiles {ev.done}/{ev.total}")
            continue
        if bar is not None:
            bar.close()
            bar = None
        probs_path, labels_path = (Path(f) for f in ev.files)
        print(f"{ev.image}: wrote {probs_path} and {labels_path} in {time.perf_counter() - t0:.1f}s")
        if args.instances:
            for f in instance_outputs(model, by_name[ev.image], probs_path, labels_path, out_dir, args):
                print(f"{ev.image}: wrote {f}")
        t0 = time.perf_counter()
    return 0


def instance_outputs(model, image_path: Path, probs_path: Path, labels_path: Path, out_dir: Path,
                     args) -> list[Path]:
    """``--instances`` (and ``--measure``): objects from the probabilities just written."""
    from .core.instance_outputs import write_instances, write_measurements
    from .core.io import read_image

    stem, spacing = _stem(image_path), args.spacing
    inst, n = write_instances(probs_path, model.meta, out_dir / f"{stem}_instances.tif",
                              class_value=args.instance_class, min_size=args.min_size,
                              seed_distance=args.seed_distance, spacing=spacing)
    written = [f"{inst} ({n} objects)"]
    if args.measure:
        image = read_image(image_path) if args.channel_axis is None else None
        csv_path, _ = write_measurements(inst, out_dir / f"{stem}_objects.csv", image=image,
                                         labels=read_image(labels_path), spacing=spacing,
                                         class_names=model.meta.get("class_names"))
        written.append(csv_path)
    return written

