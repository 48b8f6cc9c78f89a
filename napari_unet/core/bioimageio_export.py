"""Export a model as a bioimage.io model package (format 0.5), built with ``bioimageio.spec``.

The package holds: the weights as ``pytorch_state_dict`` with the U-Net's source file and as
``torchscript``; the axes (batch, channel, [z,] y, x) with an input size parameterised on the
pooling grid (``min`` = 2 x halo + grid, ``step`` = grid) and the output halo from the measured
receptive field; our percentile normalisation as ``scale_range`` (per sample and channel);
softmax as post-processing (outputs are the class probabilities that ``predict`` returns);
test tensors, a cover image, a README, training provenance, and our own metadata under
``config.napari_unet`` so that :func:`napari_unet.load_model` restores the exact model.

``bioimageio.spec`` / ``bioimageio.core`` are imported lazily (``pip install
'napari-unet[bioimageio]'``). Nothing here needs the network: every file is local, no field
refers to a URL.
"""
from __future__ import annotations

import copy
import dataclasses
import datetime as _dt
import inspect
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .errors import UserError, UserOSError, say

INSTALL_HINT = "pip install 'napari-unet[bioimageio]'"
SCALE_RANGE_EPS = 1e-10  # bioimage.io divides by (high - low + eps); we divide by (high - low)
UNET_CITATION = ("Ronneberger, Fischer, Brox. U-Net: Convolutional Networks for Biomedical Image "
                 "Segmentation. MICCAI 2015", "10.1007/978-3-319-24574-4_28")


class PackageTestFailed(RuntimeError):
    """bioimageio.core's ``test_model`` failed on the package (nothing was written)."""

    def __init__(self, message: str, summary: Any):
        super().__init__(message)
        self.summary = summary


@dataclasses.dataclass
class Exported:
    path: Path
    summary: Any = None  # bioimageio's ValidationSummary when the package was tested


def require_bioimageio() -> None:
    missing = []
    for mod in ("bioimageio.spec", "bioimageio.core"):
        try:
            __import__(mod)
        except ImportError:
            missing.append(mod)
    if missing:
        raise UserError(f"exporting for bioimage.io needs {' and '.join(missing)}: {INSTALL_HINT}")


def input_size(meta: dict) -> tuple[int, int, int]:
    """``(min, step, halo)`` of every spatial axis: the output, cropped by ``halo`` on each side,
    keeps at least one grid cell."""
    g, halo = int(meta["grid"]), int(meta["halo"])
    return 2 * halo + g, g, halo


def architecture_source() -> str:
    """The U-Net as one self-contained file (torch only), from the classes in core/model.py."""
    from . import model as m

    consts = []
    for name in ("_CONV", "_TCONV", "_BN", "_MAXPOOL", "_AVGPOOL"):
        table = getattr(m, name)
        consts.append(f"{name} = {{" + ", ".join(f"{k}: nn.{v.__name__}" for k, v in table.items()) + "}")
    return "\n".join([
        '"""The napari-unet U-Net (generated from napari_unet/core/model.py by napari-unet export)."""',
        "from __future__ import annotations", "", "import math", "from typing import Any", "",
        "import torch", "import torch.nn.functional as F", "from torch import nn", "",
        "UserError = ValueError", "UserTypeError = TypeError", "", *consts, "", "",
        inspect.getsource(m.ConvBlock), "", inspect.getsource(m.FilterStem), "", inspect.getsource(m.UNet)])


def architecture_kwargs(meta: dict) -> dict[str, Any]:
    kw: dict[str, Any] = {k: int(meta[k]) for k in ("dims", "in_channels", "classes", "base_channels", "depth")}
    from .pooling import is_isotropic

    if not is_isotropic(meta.get("pooling")):  # anisotropic voxels: the per-axis schedule
        kw["pooling"] = [[int(f) for f in level] for level in meta["pooling"]]
    if meta.get("stem"):   # fixed filters in front of the first layer (model.FilterStem)
        kw["stem"] = [[float(v) for v in scale] for scale in meta["stem"]]
    return kw


def _check_architecture(source: str, model: Any, meta: dict) -> None:
    """The generated file must rebuild the same network (same weights, same outputs)."""
    import torch

    ns: dict[str, Any] = {"__name__": "napari_unet_exported_arch"}
    exec(compile(source, "napari_unet_unet.py", "exec"), ns)  # noqa: S102 (our own source)
    twin = ns["UNet"](**architecture_kwargs(meta))
    twin.load_state_dict(model.state_dict(), strict=True)
    twin.eval()
    g = int(meta["grid"])
    x = torch.randn((1, int(meta["in_channels"])) + (2 * g,) * int(meta["dims"]))
    with torch.no_grad():
        if not torch.equal(twin(x), model.eval()(x)):
            raise RuntimeError("the exported U-Net source does not reproduce the model")


def channel_names(names: list[str]) -> list[str]:
    """bioimage.io channel names are identifiers: 'class 2' -> 'class_2' (unique)."""
    import keyword
    import re

    out: list[str] = []
    for i, n in enumerate(names):
        s = re.sub(r"\W+", "_", str(n).strip()).strip("_") or f"class_{i + 1}"
        if s[0].isdigit() or keyword.iskeyword(s):
            s = f"c_{s}"
        while s in out:
            s += f"_{i + 1}"
        out.append(s)
    return out


def package_name(text: str) -> str:
    """bioimage.io names take letters, digits, spaces and _+-() only, 5 to 128 characters."""
    import re
    import string

    ok = set(string.ascii_letters + string.digits + "_+- ()")
    s = re.sub(r" +", " ", "".join(c if c in ok else " " for c in str(text))).strip()[:128]
    if len(s) < 5:
        raise UserError(f"name {text!r} is too short for bioimage.io (5 to 128 letters, digits, "
                        "spaces, _+-())")
    return s


def _check_out(out: Path, overwrite: bool) -> None:
    from .bioimageio_package import CONFIG_KEY, is_package, read_rdf
    from .errors import option

    o = say("out", "--out")
    if out.suffix.lower() != ".zip":
        raise UserError(f"{o} {out} must name a .zip file (a bioimage.io package)")
    if out.is_dir():
        raise UserError(f"{o} {out} is a folder; give a file path such as model.zip")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise UserError(f"the folder of {o} {out} does not exist")
    from .outputs import prepare_folder

    prepare_folder(parent, what=f"folder of {o} {out}")   # writable (a read-only disk is named as such)
    if out.exists():
        ours = False
        try:
            ours = is_package(out) and CONFIG_KEY in (read_rdf(out).get("config") or {})
        except (ValueError, OSError):
            pass
        if not ours:
            raise UserError(f"{o} {out} exists and is not a package exported by napari-unet; "
                            "choose another name")
        if not overwrite:
            raise UserError(f"{o} {out} exists; pass {option('overwrite')} to replace it")


def export_bioimageio(model: Any, out: str | os.PathLike, *, name: str | None = None,
                      description: str | None = None, authors: list[str] | None = None,
                      license: str = "CC-BY-4.0", test_image: Any = None,
                      channel_axis: int | None = None, run_test: bool = True,
                      overwrite: bool = False, on_start: Callable[[], None] | None = None) -> Exported:
    """Write ``model`` (a model or a model file) to ``out`` (.zip) as a bioimage.io package.

    ``test_image``: an image like the training data to make the test tensors and cover from
    (default: a synthetic one). ``run_test``: run bioimageio.core's ``test_model`` on the package
    before it replaces ``out``; a failure raises :class:`PackageTestFailed` and writes nothing.
    ``on_start``: called once ``out`` and the model have passed their checks, before the work.
    """
    from .io import atomic_path, load_model
    from .model import model_meta

    out = Path(out)
    _check_out(out, overwrite)
    require_bioimageio()
    source_file = None
    if isinstance(model, (str, os.PathLike)):
        source_file = Path(model)
        if source_file.resolve() == out.resolve():
            raise UserError(f"{out} is the model file itself; choose another name")
        model = load_model(model)
    meta = model_meta(model)
    norm = meta.get("normalization") or {}
    if norm.get("method", "percentile") != "percentile":
        raise UserError(f"cannot export a model normalised by {norm.get('method')!r}: bioimage.io "
                        "packages reproduce percentile normalisation only")
    from .outputs import check_space

    # room for the package before any work: two copies of the weights (state dict and
    # TorchScript), the test tensors and cover (a few MB at most), and its temporary copy beside it
    weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    check_space(out.parent if str(out.parent) else Path("."), 2 * (2 * weights + (4 << 20)),
                what=f"folder of {say('out', '--out')} {out}")
    if name is not None:
        package_name(name)  # a name too short fails before the work
    if on_start is not None:
        on_start()
    with tempfile.TemporaryDirectory(prefix="napari-unet-export-") as tmp:
        descr = build_description(model, Path(tmp), name=name, description=description,
                                  authors=authors, license=license, test_image=test_image,
                                  channel_axis=channel_axis, source_file=source_file)
        from bioimageio.spec import save_bioimageio_package

        with atomic_path(out) as part:
            zip_path = Path(tmp) / "package.zip"
            save_bioimageio_package(descr, output_path=zip_path)
            summary = test_package(zip_path) if run_test else None
            if summary is not None and summary.status != "passed":
                raise PackageTestFailed(f"the package failed bioimage.io's test_model "
                                        f"({summary.status}); nothing was written", summary)
            try:
                shutil.copyfile(zip_path, part)
            except OSError as e:   # named as the package the user asked for, not our temporary copy
                raise UserOSError(e.errno, e.strerror or str(e), str(out)) from None
    return Exported(out, summary)


def summary_text(summary: Any) -> str:
    """test_model's summary as Markdown, without the conda sections (there is no conda here)."""
    text = summary.format()
    head = text.split("\n### ")[0]
    return "\n".join(line for line in head.splitlines()
                     if "conda" not in line.lower() and "See [" not in line).rstrip() + "\n"


def test_package(path: str | os.PathLike, *, devices: list[str] | None = None) -> Any:
    """Run bioimageio.core's ``test_model`` (all weight formats, offline) and return its summary."""
    require_bioimageio()
    from bioimageio.core import test_model

    return test_model(str(path), devices=devices or ["cpu"])


def build_description(model: Any, tmp: Path, *, name: str | None, description: str | None,
                      authors: list[str] | None, license: str, test_image: Any,
                      channel_axis: int | None, source_file: Path | None = None) -> Any:
    """The bioimage.io ``ModelDescr`` with its files written into ``tmp``."""
    import torch
    from bioimageio.spec.model import v0_5 as bm

    from .. import __version__
    from . import bioimageio_assets as assets
    from .bioimageio_package import CONFIG_KEY
    from .predict import predict

    model = copy.deepcopy(model).cpu().eval()  # the caller's model keeps its device and mode
    meta = dict(model.meta)
    dims, cin, g = int(meta["dims"]), int(meta["in_channels"]), int(meta["grid"])
    mn, step, halo = input_size(meta)
    spatial = ["z", "y", "x"][-dims:]
    names = list(meta.get("class_names") or [])

    # test tensors: a raw image (the package normalises it) and our probabilities for it
    img = assets.make_test_image(meta, test_image, channel_axis, mn, step)  # (C, *spatial)
    probs = predict(model, img if cin > 1 else img[0], tile=None, batch_size=1, device="cpu",
                    channel_axis=0 if cin > 1 else None, stats=assets.exact_stats(img, meta))
    np.save(tmp / "test_input.npy", img[None].astype(np.float32))
    np.save(tmp / "test_output.npy", probs[None].astype(np.float32))
    assets.write_cover(tmp / "cover.png", img, probs, meta)
    import tifffile

    tifffile.imwrite(tmp / "sample_input.tif", img)  # for people and viewers (.npy is for tests)
    tifffile.imwrite(tmp / "sample_output.tif", probs)

    # weights: state dict + self-contained architecture file, and TorchScript
    arch_src = architecture_source()
    _check_architecture(arch_src, model, meta)
    (tmp / "napari_unet_unet.py").write_text(arch_src)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    torch.save(state, tmp / "weights.pt")
    with torch.no_grad():
        example = torch.zeros((1, cin) + (mn,) * dims)
        traced = torch.jit.trace(model.cpu(), example, check_trace=False)
    traced.save(str(tmp / "weights_torchscript.pt"))
    torch_version = bm.Version(torch.__version__.split("+")[0])

    low, high = float(meta["normalization"].get("low", 1.0)), float(meta["normalization"].get("high", 99.8))
    inp = bm.InputTensorDescr(
        id=bm.TensorId("raw"),
        description="raw image, any intensity range (normalised by the package)",
        axes=[bm.BatchAxis(),
              bm.ChannelAxis(channel_names=[bm.Identifier(f"channel{i}") for i in range(cin)]),
              *[bm.SpaceInputAxis(id=bm.AxisId(a), size=bm.ParameterizedSize(min=mn, step=step))
                for a in spatial]],
        test_tensor=bm.FileDescr(source=tmp / "test_input.npy"),
        sample_tensor=bm.FileDescr(source=tmp / "sample_input.tif"),
        data=bm.IntervalOrRatioDataDescr(type="float32"),
        preprocessing=[bm.ScaleRangeDescr(kwargs=bm.ScaleRangeKwargs(
            axes=[bm.AxisId(a) for a in spatial], min_percentile=low, max_percentile=high,
            eps=SCALE_RANGE_EPS))])
    outp = bm.OutputTensorDescr(
        id=bm.TensorId("probabilities"),
        description=f"class probabilities; label value k is channel k-1 ({', '.join(names)})",
        axes=[bm.BatchAxis(),
              bm.ChannelAxis(channel_names=[bm.Identifier(n) for n in channel_names(names)]),
              *[bm.SpaceOutputAxisWithHalo(
                  id=bm.AxisId(a), halo=halo,
                  size=bm.SizeReference(tensor_id=bm.TensorId("raw"), axis_id=bm.AxisId(a)))
                for a in spatial]],
        test_tensor=bm.FileDescr(source=tmp / "test_output.npy"),
        sample_tensor=bm.FileDescr(source=tmp / "sample_output.tif"),
        data=bm.IntervalOrRatioDataDescr(type="float32", range=(0.0, 1.0)),
        postprocessing=[bm.SoftmaxDescr(kwargs=bm.SoftmaxKwargs(axis=bm.AxisId("channel")))])
    weights = bm.WeightsDescr(
        pytorch_state_dict=bm.PytorchStateDictWeightsDescr(
            source=tmp / "weights.pt", pytorch_version=torch_version,
            architecture=bm.ArchitectureFromFileDescr(
                source=tmp / "napari_unet_unet.py", callable=bm.Identifier("UNet"),
                kwargs=architecture_kwargs(meta))),
        torchscript=bm.TorchscriptWeightsDescr(
            source=tmp / "weights_torchscript.pt", pytorch_version=torch_version,
            parent="pytorch_state_dict"))

    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    name = package_name(name or assets.default_name(meta))
    description = description or assets.default_description(meta)
    (tmp / "README.md").write_text(assets.readme(meta, name, description, mn, step, halo,
                                                 source_file, SCALE_RANGE_EPS))
    n_params = sum(int(p.numel()) for p in model.parameters())
    config = {
        "bioimageio": {
            "architecture_type": f"{dims}D U-Net",
            "architecture_description": assets.architecture_text(meta),
            "task": "semantic segmentation",
            "model_parameter_count": n_params,
            "training": assets.training_details(meta),
        },
        CONFIG_KEY: {
            "meta": meta,
            "exported": {"napari_unet": __version__, "torch": torch.__version__, "time": now,
                         "from": source_file.name if source_file else None},
            "normalization": assets.NORMALIZATION_NOTE,
        },
    }
    return bm.ModelDescr(
        name=name, description=description,
        authors=[bm.Author(name=a) for a in (authors or [])],
        cite=[bm.CiteEntry(text=UNET_CITATION[0], doi=bm.Doi(UNET_CITATION[1]))],
        license=bm.LicenseId(license),
        tags=["napari-unet", "unet", "pytorch", "segmentation", "semantic-segmentation", f"{dims}d"],
        documentation=bm.FileDescr(source=tmp / "README.md"),
        covers=[bm.FileDescr(source=tmp / "cover.png")],
        inputs=[inp], outputs=[outp], weights=weights, config=config)
