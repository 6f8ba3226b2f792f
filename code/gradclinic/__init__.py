"""Shared code for The Gradient Clinic: bump functions, layers, training, diagnosis and checks."""

import os

# TensorFlow reads these when it is first imported, so they must be set before any
# submodule imports it; setdefault keeps a reader's own choice.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# oneDNN reorders float sums per CPU model, which would make stored outputs machine-dependent.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

__all__ = ["set_up"]


def set_up(seed: int = 0) -> None:
    """Make a chapter deterministic, quiet and quick: seeds, op determinism, logs, print, gc."""
    import gc
    import logging

    import keras
    import numpy as np
    import tensorflow as tf

    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    tf.get_logger().setLevel(logging.ERROR)
    np.set_printoptions(precision=4, suppress=True)
    # Importing TensorFlow and Keras creates a great many long-lived objects; frozen, they are
    # skipped by every later full pass of the cyclic garbage collector instead of re-walked.
    gc.freeze()
