"""The napari widgets: thin Qt layers over :mod:`napari_unet.core` (which never imports Qt)."""
