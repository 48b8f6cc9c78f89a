"""The output policy: what we may write where, checked before any long work starts.

- Never overwrite an input (compared by file identity, not by spelling).
- Never replace a file that napari-unet did not write, unless the user says ``overwrite``;
  earlier outputs of ours (TIFFs carrying our ``Software`` tag, model files with our header)
  may be replaced.
- Outputs of ours found among the inputs (``x_probs.tif`` given with ``x.tif``, or a folder
  holding both) are skipped, not predicted on.
- The folder must be writable and have room for what we know we will write.
- Temporary files are named ``.<name>.nu<pid>-<random>.part``; those of processes that no longer
  run are removed on the next run.
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Iterable, Sequence

from .errors import UserError, describe_os_error, option

__all__ = ["temp_prefix", "same_file", "is_ours", "is_our_model", "is_our_output_name", "expand_inputs",
           "check_output", "prepare_folder", "check_space", "reserve", "clean_stale_temps"]

MARK = "napari-unet"          # the TIFF Software tag of every TIFF we write
OUTPUT_SUFFIXES = ("_probs", "_labels", "_instances", "_errors")
IMAGE_SUFFIXES = (".tif", ".tiff")
_TEMP_RE = re.compile(r"^\..+\.nu(\d+)-[^.]+\.part$")


def temp_prefix(name: str) -> str:
    return f".{name}.nu{os.getpid()}-"


# ----------------------------------------------------------------------------- identity

def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return Path(a).resolve() == Path(b).resolve()


def is_ours(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a file napari-unet wrote (cheap: reads a header, never the data): a
    TIFF with our ``Software`` tag, or a model file of ours (:func:`is_our_model`)."""
    p = Path(path)
    if not p.is_file():
        return False
    if p.name.lower().endswith(IMAGE_SUFFIXES):
        try:
            import tifffile

            with tifffile.TiffFile(p) as tif:
                sw = tif.pages[0].software
                return isinstance(sw, str) and sw.startswith(MARK)
        except Exception:
            return False
    return is_our_model(p)


def is_our_model(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a model file napari-unet wrote (``save_model``), whatever its name:
    reads the archive's index and its small pickle, never the weights."""
    import zipfile

    try:
        if not Path(path).is_file() or not zipfile.is_zipfile(path):
            return False
        with zipfile.ZipFile(path) as z:
            pkl = next((n for n in z.namelist() if n.endswith("/data.pkl")), None)
            return pkl is not None and b"napari-unet-model" in z.read(pkl)
    except Exception:
        return False


def is_our_output_name(path: Path) -> bool:
    stem = path.name
    for suf in (".ome.tiff", ".ome.tif", ".tiff", ".tif"):
        if stem.lower().endswith(suf):
            stem = stem[: -len(suf)]
            break
    return stem.endswith(OUTPUT_SUFFIXES)


# ----------------------------------------------------------------------------- inputs

def expand_inputs(paths: Sequence[str | os.PathLike], what: str = "image") -> tuple[list[Path], list[Path]]:
    """Files to read for ``paths`` (a folder gives its TIFFs), and the outputs of ours skipped."""
    files: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if not p.exists():
            raise UserError(f"{what} {raw} does not exist")
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.is_file() and not q.name.startswith(".")
                           and q.name.lower().endswith(IMAGE_SUFFIXES))
            if not found:
                raise UserError(f"the folder {raw} holds no TIFF images")
            files.extend(found)
        else:
            files.append(p)
    kept, skipped = [], []
    for f in files:
        (skipped if is_our_output_name(f) and is_ours(f) else kept).append(f)
    if not kept:
        raise UserError(f"nothing to do: {', '.join(map(str, skipped[:3]))} "
                        f"{'is an output' if len(skipped) == 1 else 'are outputs'} of napari-unet, not input images")
    return kept, skipped


# ----------------------------------------------------------------------------- outputs

def check_output(path: str | os.PathLike, *, inputs: Iterable[str | os.PathLike] = (),
                 overwrite: bool | None = False, what: str = "output", model: bool = False) -> Path:
    """Refuse (UserError) to write ``path`` if it is an input, a folder, or a file that
    napari-unet did not write (unless ``overwrite``; None: the caller has no such option, and the
    message does not offer it). ``model``: the output is a model file, which replaces only an
    earlier model of ours (never an image or painting we wrote)."""
    p = Path(path)
    for src in inputs:
        if Path(src).exists() and same_file(p, src):
            raise UserError(f"the {what} {p} is one of the inputs; refusing to overwrite it "
                            "(choose another name or folder)")
    if p.is_dir():
        raise UserError(f"the {what} {p} is a folder, not a file")
    if p.exists() and not overwrite:
        other = "" if overwrite is None else f", or pass {option('overwrite')}"
        if model and not is_our_model(p) and is_ours(p):
            raise UserError(f"{p} is an image napari-unet wrote (a result or a painting), not a model; "
                            f"refusing to replace it with a model (choose another name{other})")
        if not (is_our_model(p) if model else is_ours(p)):
            raise UserError(f"{p} exists and was not written by napari-unet; refusing to replace it "
                            f"(choose another name or folder{other})")
    return p


def prepare_folder(folder: str | os.PathLike, *, what: str = "output folder", nbytes: int = 0) -> Path:
    """Create ``folder`` if needed, prove it writable, check room for ``nbytes``, and remove
    stale temporary files of ours. Every failure is a one-line UserError."""
    f = Path(folder) if str(folder) else Path(".")
    if f.exists() and not f.is_dir():
        raise UserError(f"the {what} {f} is a file, not a folder")
    try:
        f.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=temp_prefix("probe"), suffix=".part", dir=f)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise UserError(f"cannot write to the {what} {f}: {describe_os_error(e, path=False)}") from None
    clean_stale_temps(f)
    check_space(f, nbytes, what=what)
    return f


def check_space(folder: Path, nbytes: int, *, what: str = "output folder") -> None:
    if nbytes <= 0:
        return
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return
    need = int(nbytes * 1.02) + (8 << 20)
    if need > free:
        raise UserError(f"not enough disk space in the {what} {folder}: the outputs need "
                        f"{_size(need)}, {_size(free)} is free")


def reserve(fd: int, nbytes: int, path: str | os.PathLike = "") -> None:
    """Allocate ``nbytes`` for an open file now, so that a full disk is an error here and not
    a SIGBUS in the middle of writing through a memory map."""
    if nbytes <= 0 or not hasattr(os, "posix_fallocate"):
        return
    try:
        os.posix_fallocate(fd, 0, nbytes)
    except OSError as e:
        if e.errno in (95, 22):  # EOPNOTSUPP / EINVAL: the file system cannot; go on unreserved
            return
        raise UserError(f"cannot reserve {_size(nbytes)} for {path}: {describe_os_error(e, path=False)}") from None


def clean_stale_temps(folder: str | os.PathLike) -> list[Path]:
    """Remove our temporary ``.part`` files in ``folder`` whose process no longer runs."""
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for ent in entries:
        m = _TEMP_RE.match(ent.name)
        if not m or not ent.is_file(follow_symlinks=False):
            continue
        pid = int(m.group(1))
        if pid == os.getpid() or _alive(pid):
            continue
        try:
            os.unlink(ent.path)
            removed.append(Path(ent.path))
        except OSError:
            pass
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def _size(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"  # pragma: no cover
