"""Degenerate evaluations: inputs on which a protocol returns a number that measures nothing."""

from __future__ import annotations

import numpy as np


def one_class(fit_labels: np.ndarray, eval_labels: np.ndarray, class_names: tuple[str, ...]) -> str | None:
    """Why a classification score is uninformative, or None.

    With one class in the fit split every prediction is that class; with one class in the eval split
    accuracy only measures how often the model says that class, not whether it separates classes."""
    for split, labels in (("fit", fit_labels), ("eval", eval_labels)):
        classes = np.unique(labels)
        if len(classes) == 1:
            name = class_names[classes[0]] if 0 <= classes[0] < len(class_names) else str(classes[0])
            return f"the {split} split holds a single class ({name!r}): the score does not measure separation"
    return None


def constant_target(fit_targets: np.ndarray, eval_targets: np.ndarray) -> str | None:
    """Why a regression score is uninformative (R2 of a constant target is 0 by convention), or None."""
    for split, targets in (("fit", fit_targets), ("eval", eval_targets)):
        if len(targets) and np.ptp(targets) == 0:
            return (
                f"the {split} split's target is constant ({targets[0]:g}): R2 and Pearson's r are undefined"
            )
    return None
