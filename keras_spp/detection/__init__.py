"""SPP-net detection (the paper's section 4): boxes, proposals, features, heads, SVMs,
NMS, evaluation and the R-CNN baseline."""
