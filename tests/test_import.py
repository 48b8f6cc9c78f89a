"""Importing the package (and the plugin's start-up path) must not pull in torch, Qt or napari."""
import subprocess
import sys


def _modules_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys; print(' '.join(sys.modules))"],
                         capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_import_is_light():
    mods = _modules_after("import napari_unet; napari_unet.__version__")
    assert "torch" not in mods
    assert not any(m.startswith(("qtpy", "PyQt5", "napari.")) or m == "napari" for m in mods)


def test_api_loads_lazily():
    mods = _modules_after("import napari_unet; napari_unet.evaluate; napari_unet.error_map; "
                          "from napari_unet.core.io import write_tiff, read_image")
    assert "torch" not in mods  # metrics and TIFF I/O are numpy only
    import napari_unet

    assert callable(napari_unet.build_model) and callable(napari_unet.predict)
    assert set(napari_unet.__all__) >= {"build_model", "predict", "save_model", "load_model",
                                        "evaluate", "train", "iter_train"}
