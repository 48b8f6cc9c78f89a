"""The note on a class painted in a few spots only (``labels.scarce_paint``), which training
gives when it starts (CLI and Train widget)."""
from __future__ import annotations

from napari_unet.core.labels import scarce_paint


def test_balanced_paint_and_a_single_class_get_no_note():
    assert scarce_paint({1: 800, 2: 1200}) == ""
    assert scarce_paint({1: 800, 2: 1200, 3: 0}) == ""   # a class left unpainted is a choice
    assert scarce_paint({2: 50}) == ""
    assert scarce_paint({}) == ""


def test_a_class_under_two_percent_of_the_paint_is_named_with_its_share():
    note = scarce_paint({"1": 31, "2": 4958}, ["background", "membrane"])
    assert note.startswith("background (class 1) holds 31 of the 4,989 painted pixels (0.6%)")
    assert note.endswith("paint it in more places")
    two = scarce_paint({1: 10, 2: 5000, 3: 20}, ["background", "class 2", "class 3"])
    assert "background (class 1) holds 10" in two and "class 3 holds 20" in two
    assert "(class 3)" not in two and two.endswith("paint them in more places")
    assert "class 2" not in two.replace("class 3", "")  # the well-painted class is not named
