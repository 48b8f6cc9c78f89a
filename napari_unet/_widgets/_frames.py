"""Moved to napari_unet.core.frames (the prediction job in core.jobs uses it); importable from
here too."""
from napari_unet.core.frames import (frame_channel_axis, is_time_lapse, iter_predict_frames,  # noqa: F401
                                     spatial_axes)
