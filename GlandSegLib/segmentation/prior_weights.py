"""Per-gland prior weights: correct how often the network says "gland" on real CT.

Why: stage one learned the submandibular and lacrimal glands from phantoms only, where a
gland and its surroundings differ as much as the phantom painted them. On real CT the
network still puts its highest gland probabilities in the right place, but too few voxels
pass the argmax: the submandibular glands came out at 60% of the experts' volume, the
lacrimal glands at half. That is a shift of the class priors between training and use, and
Bayes' rule says how to correct it (Saerens, Latinne & Decaestecker, Neural Computation 14,
2002): multiply each class's posterior by the ratio of its new to its old prior and
renormalise. GlandSeg stores one such weight per gland in the model (glandseg-model.json
"prior_weights"); they are fitted on real training CTs only
(GlandSegLib.defaultmodel.prior_calibration). A model without weights is used as trained.

The renormalised maps are still probabilities, so the uncertainty map and the confidence
read them unchanged; a weight above 1 grows a gland only where the network already gave it
some probability, it never paints a gland where the network saw none.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np


def apply_prior_weights(probs: dict[int, np.ndarray], weights: Mapping[int, float]) -> dict[int, np.ndarray]:
    """probs (canonical label -> float32 map, 0 = background, summing to 1 per voxel) with each
    weighted class multiplied by its weight and every class divided by the new sum. In place
    (the maps are large); returns `probs`."""
    used = {label: float(w) for label, w in weights.items() if label in probs and float(w) != 1.0}
    if not used:
        return probs
    total = np.zeros_like(probs[0])
    for label, p in probs.items():
        if label in used:
            p *= np.float32(used[label])
        total += p
    np.maximum(total, np.float32(1e-12), out=total)
    for p in probs.values():
        p /= total
    return probs


def weights_for_stage(weights: Mapping[int, float], organ: str) -> dict[int, float]:
    """The weights a second stage applies: those of the glands it segments (its kind, e.g. "lacrimal")."""
    from GlandSegLib.glands import BY_LABEL

    return {label: w for label, w in weights.items() if BY_LABEL[label].organ == organ}


def weights_for_stage_one(weights: Mapping[int, float], second_stages: Iterable[str]) -> dict[int, float]:
    """The weights stage one applies: all but those of the glands a second stage segments (each
    stage's kind names their organ). Stage one's own voxels of those glands are dropped when the
    stage's glands are merged (lacrimal.merge_lacrimal), so a weight applied there would only hand
    tissue to a class that is then erased (a x22 weight emptied a submandibular gland)."""
    from GlandSegLib.glands import BY_LABEL

    staged = set(second_stages)
    return {label: w for label, w in weights.items() if BY_LABEL[label].organ not in staged}
