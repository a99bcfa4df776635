"""A pretrained classifier's fully connected layers as a detector's starting point."""

import numpy as np


def transferable_fc_weights(pretrained, pooled_dim):
    """fc6 and fc7 of the pretrained classifier, when fc6 takes ``pooled_dim`` inputs:
    ``{"fc6": [kernel, bias], "fc7": weights}``, or ``None`` where the classifier has
    no fc6/fc7 or its fc6 takes another size.

    Window features with context (``MultiScaleRoiFeatures(context=...)``) are two
    pyramid vectors, the window's and its context square's: fc6 then starts as the
    classifier's fc6 applied to each, halved, so that it gives the classifier's own
    fc6 output when both halves are alike.
    """
    try:
        fc6, fc7 = pretrained.get_layer("fc6"), pretrained.get_layer("fc7")
    except ValueError:
        return None
    (kernel, bias), fc7_weights = fc6.get_weights(), fc7.get_weights()
    copies, rest = divmod(pooled_dim, kernel.shape[0])
    if rest or copies not in (1, 2):
        return None
    return {"fc6": [np.concatenate([kernel / copies] * copies, axis=0), bias], "fc7": fc7_weights}
