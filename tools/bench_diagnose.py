"""Overhead of gradclinic.diagnose on chapter 2's model, with and without the search for causes.

The model is chapter 2's: one BumpLayer on make_bump_data(sigma=0.5) points, here 256 of them
(seed 0), started at sigma = 0.4. With guard "double_where" every gradient is healthy, so diagnose
does one forward and backward pass; with guard "naive" the gradient of sigma is NaN and diagnose
also traces the loss and follows the NaN back to its op (the origin search); the question's
BrokenBumpLayer (one point: its tf.cond takes a scalar condition) has a None gradient and
exercises the search for its cause. For scale the table
also gives a bare GradientTape pass and one training epoch (batch size 32) of the healthy model.
Each row is the median of --repeats runs after one warm-up run. Run it on an idle machine:

    PYTHONPATH=code .venv/bin/python tools/bench_diagnose.py
"""

import argparse
import statistics
import time
from collections.abc import Callable

import gradclinic

gradclinic.set_up(seed=0)

import keras  # noqa: E402 - gradclinic configures TensorFlow before it is imported
import tensorflow as tf  # noqa: E402
from gradclinic.bump import BrokenBumpLayer  # noqa: E402
from gradclinic.data import make_bump_data  # noqa: E402
from gradclinic.diagnose import diagnose  # noqa: E402
from gradclinic.train import make_bump_model  # noqa: E402


def median_seconds(run: Callable[[], object], repeats: int) -> float:
    """Median wall time of run() over `repeats` calls, after one warm-up call."""
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bare_pass(model: keras.Model, x: object, y: object) -> None:
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(keras.losses.mean_squared_error(y, model(x, training=True)))
    tape.gradient(loss, model.trainable_variables)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15, help="timed runs per row (median)")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")

    x, y = make_bump_data(sigma=0.5, n=256, seed=0)
    healthy = make_bump_model("double_where", 0.4)
    nan = make_bump_model("naive", 0.4)
    broken = keras.Sequential([keras.Input(shape=(1,)), BrokenBumpLayer()])
    assert diagnose(healthy, x, y, loss="mse").ok
    assert diagnose(nan, x, y, loss="mse")[0].culprit is not None
    assert diagnose(broken, x[:1], y[:1], loss="mse")[0].cause is not None
    trained = make_bump_model("double_where", 0.4)
    trained.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")

    rows = [
        ("bare GradientTape pass (healthy model)", lambda: bare_pass(healthy, x, y)),
        ("diagnose, healthy (no search)", lambda: diagnose(healthy, x, y, loss="mse")),
        ("diagnose, NaN (origin search)", lambda: diagnose(nan, x, y, loss="mse")),
        ("diagnose, None, 1 point (cause search)", lambda: diagnose(broken, x[:1], y[:1], "mse")),
        ("one training epoch, 8 batches", lambda: trained.fit(x, y, epochs=1, verbose=0)),
    ]
    results = [(name, median_seconds(run, args.repeats)) for name, run in rows]
    width = max(len(name) for name, _ in results)
    print(f"{'case':<{width}}  median ms  ({args.repeats} runs, TensorFlow {tf.__version__})")
    for name, seconds in results:
        print(f"{name:<{width}}  {1000 * seconds:9.1f}")


if __name__ == "__main__":
    main()
