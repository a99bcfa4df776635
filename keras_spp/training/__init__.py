"""Training a classifier (the detector's pretraining): its compiled model and
learning-rate schedule, the distribution strategy, and the dtype policy for the
hardware it runs on."""
