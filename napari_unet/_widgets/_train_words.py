"""The engine's refusals in the Train widget's words. The engine speaks to Python callers
(``image 1``, ``classes=3``, ``init=MODEL``); in the widget the same mistake is told with the
user's layers by name and the controls to change."""
from __future__ import annotations

import re
from typing import Sequence

_RULES = [
    (re.compile(r"the labels contain class (\d+) but classes=(\d+)"),
     r"a painting holds class \1 but Annotate lists \2 classes: add that class in Annotate, or erase "
     r"those strokes"),
    (re.compile(r"the labels contain class (\d+) but the model has only (\d+) classes; to add classes "
                r"fine-tune a copy with init=MODEL \(a new head\)"),
     r"a painting holds class \1 but the current model has \2 classes: to add classes, save the model "
     r"and train with 'start from: fine-tune a model file' (a copy with a new head)"),
    (re.compile(r"classes=(\d+) but the model being continued has (\d+); use init=MODEL to fine-tune a "
                r"copy with a new head"),
     r"Annotate lists \1 classes but the current model has \2: save the model and train with "
     r"'start from: fine-tune a model file' (a copy with a new head)"),
    (re.compile(r"dims=(\d) but the (model|init model) is (\d)D"),
     r"the \2 is \3D: choose the \3D model (or start from a new model)"),
]


def widget_words(message: str, pairs: Sequence[tuple[str, str]]) -> str:
    """``message`` with ``image N`` / ``labels N`` (the N-th ticked pair) named by its layers
    and the options of the Python API told as the widget's controls. ``pairs``: the ticked
    (image layer name, painting layer name) in the order they were given to the engine."""
    def layer(m: re.Match) -> str:
        i = int(m.group(2))
        if i >= len(pairs):
            return m.group(0)
        return f"'{pairs[i][0] if m.group(1) == 'image' else pairs[i][1]}'"

    out = re.sub(r"\b(image|labels) (\d+)\b", layer, message)
    out = re.sub(r"^('[^']*') contain ", r"\1 contains ", out)   # ("labels 0 contain ...")
    for pattern, words in _RULES:
        out = pattern.sub(words, out)
    return out
