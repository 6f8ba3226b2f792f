"""The Gradient Clinic: bumps, layers, training, diagnosis, checks.

Importing it changes nothing global; only set_up() does, when a page calls it.
"""

__all__ = ["set_up"]

# Set by set_up() unless already set; TensorFlow reads them when first imported.
SET_UP_ENVIRONMENT = {
    # Hides TensorFlow's C++ log lines (CPU notices, oneDNN messages).
    "TF_CPP_MIN_LOG_LEVEL": "3",
    # oneDNN orders float sums per CPU model: outputs would vary by machine.
    "TF_ENABLE_ONEDNN_OPTS": "0",
}


def set_up(seed: int = 0) -> None:
    """Make a page deterministic and quiet; every effect is process-wide.

    It sets TF_CPP_MIN_LOG_LEVEL=3, which hides TensorFlow's C++ log lines,
    errors included, and TF_ENABLE_ONEDNN_OPTS=0, which turns oneDNN off;
    each only if unset, and with a warning if TensorFlow is already imported,
    since it reads them then. It seeds Python, NumPy and TensorFlow
    (keras.utils.set_random_seed), turns on op determinism, which makes some
    ops slower and makes Keras refuse XLA (jit_compile "auto" compiles
    without it, True warns and goes on without it), sets TensorFlow's Python
    logger to ERROR, makes NumPy print 4 decimals without scientific
    notation, and calls gc.freeze(), so the garbage collector skips every
    object alive now. A project that only uses diagnose needs none of this.
    """
    import gc
    import logging
    import os
    import sys
    import warnings

    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    late = []
    for name, value in SET_UP_ENVIRONMENT.items():
        if name not in os.environ:
            os.environ[name] = value
            late.append(f"{name}={value}")
    if late and "tensorflow" in sys.modules:
        warnings.warn(
            f"set_up() ran after TensorFlow was imported, so {', '.join(late)}"
            " may not take effect in this process: call set_up() first.",
            RuntimeWarning,
            stacklevel=2,  # points at the caller's line
        )

    import keras
    import numpy as np
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    tf.get_logger().setLevel(logging.ERROR)
    np.set_printoptions(precision=4, suppress=True)
    # Importing TensorFlow and Keras creates many long-lived objects; frozen,
    # later full collections skip them instead of walking them again.
    gc.freeze()
