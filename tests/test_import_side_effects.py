"""Importing gradclinic changes nothing global; set_up() does what its docstring lists, and warns when late."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

CODE = str(Path(__file__).resolve().parents[1] / "code")

# Prints, as JSON, everything global that a library could change on import.
SNAPSHOT = textwrap.dedent(
    """
    def snapshot():
        import gc, json, logging, os, random, sys, warnings
        import keras, numpy as np, tensorflow as tf
        from tensorflow.python.framework import config as tf_config
        levels = {
            name: logging.getLogger(name).level
            for name in ("", "tensorflow", "absl", "keras", "matplotlib", "h5py")
        }
        return {
            "environ": dict(os.environ),
            "determinism": tf_config.is_op_determinism_enabled(),
            "inter_threads": tf.config.threading.get_inter_op_parallelism_threads(),
            "intra_threads": tf.config.threading.get_intra_op_parallelism_threads(),
            "jit": tf.config.optimizer.get_jit(),
            "optimizer_options": repr(sorted(tf.config.optimizer.get_experimental_options().items())),
            "run_eagerly": tf.config.functions_run_eagerly(),
            "floatx": keras.config.floatx(),
            "dtype_policy": keras.config.dtype_policy().name,
            "traceback_filtering": keras.config.is_traceback_filtering_enabled(),
            "print_options": repr(sorted(np.get_printoptions().items())),
            "log_levels": levels,
            "tf_log_level": tf.get_logger().level,
            "warning_filters": repr(warnings.filters),
            "gc_frozen": gc.get_freeze_count(),
            "gc_enabled": gc.isenabled(),
            "profile": repr(sys.getprofile()),
            "numpy_random": repr(np.random.get_state()[1][:4].tolist()),
            "python_random": random.getstate()[1][:4],
        }
    """
)


def _run(body: str, env: dict[str, str] | None = None) -> dict:
    script = SNAPSHOT + textwrap.dedent(body)
    environment = {**os.environ, "PYTHONPATH": CODE} if env is None else env
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=environment,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _clean_env() -> dict[str, str]:
    # Neither variable set, so an import that sets one is seen.
    drop = ("TF_CPP_MIN_LOG_LEVEL", "TF_ENABLE_ONEDNN_OPTS")
    return {**{k: v for k, v in os.environ.items() if k not in drop}, "PYTHONPATH": CODE}


def test_importing_every_module_changes_nothing_global() -> None:
    result = _run(
        """
        import json, importlib
        import tensorflow as tf
        tf.constant(1.0)  # TensorFlow fully started, as in a user's project
        before = snapshot()
        for name in ("gradclinic", "gradclinic.bump", "gradclinic.data", "gradclinic.diagnose",
                     "gradclinic.train", "gradclinic.reparam", "gradclinic.losssplit",
                     "gradclinic.patients", "gradclinic.plots", "gradclinic.checks"):
            importlib.import_module(name)
        print(json.dumps({"before": before, "after": snapshot()}))
        """,
        env=_clean_env(),
    )
    before, after = result["before"], result["after"]
    changed = {k: (before[k], after[k]) for k in before if before[k] != after[k]}
    assert changed == {}


def test_import_alone_sets_no_environment_and_does_not_import_tensorflow() -> None:
    script = textwrap.dedent(
        """
        import json, os, sys
        before = dict(os.environ)
        import gradclinic
        print(json.dumps({"same": dict(os.environ) == before,
                          "tensorflow": "tensorflow" in sys.modules}))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=_clean_env(),
        timeout=120,
        check=True,
    )
    assert json.loads(done.stdout) == {"same": True, "tensorflow": False}


def test_set_up_makes_each_documented_change() -> None:
    result = _run(
        """
        import json, warnings
        import gradclinic
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            gradclinic.set_up(seed=0)  # before TensorFlow's import: no warning
        after = snapshot()
        print(json.dumps({"after": after, "warnings": [str(w.message) for w in caught]}))
        """,
        env=_clean_env(),
    )
    after = result["after"]
    assert result["warnings"] == []
    assert after["environ"]["TF_CPP_MIN_LOG_LEVEL"] == "3"
    assert after["environ"]["TF_ENABLE_ONEDNN_OPTS"] == "0"
    assert after["determinism"] is True
    assert after["tf_log_level"] == 40  # logging.ERROR
    assert "('precision', 4)" in after["print_options"]
    assert "('suppress', True)" in after["print_options"]
    assert after["gc_frozen"] > 0


def test_set_up_keeps_the_users_environment_values() -> None:
    env = {**_clean_env(), "TF_CPP_MIN_LOG_LEVEL": "0"}
    result = _run(
        """
        import json, gradclinic
        gradclinic.set_up(seed=0)
        print(json.dumps(snapshot()))
        """,
        env=env,
    )
    assert result["environ"]["TF_CPP_MIN_LOG_LEVEL"] == "0"


def test_set_up_after_tensorflow_warns_that_the_variables_come_too_late() -> None:
    result = _run(
        """
        import json, os, warnings
        import tensorflow as tf
        import gradclinic
        # TensorFlow may set one itself: with JAX installed, its import sets TF_CPP_MIN_LOG_LEVEL.
        unset = [n for n in gradclinic.SET_UP_ENVIRONMENT if n not in os.environ]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            gradclinic.set_up(seed=0)
            gradclinic.set_up(seed=0)  # the variables are set now: nothing more to warn about
        warned = [(w.category.__name__, str(w.message)) for w in caught]
        print(json.dumps({"unset": unset, "warned": warned}))
        """,
        env=_clean_env(),
    )
    assert "TF_ENABLE_ONEDNN_OPTS" in result["unset"]  # TensorFlow leaves this one alone
    assert len(result["warned"]) == 1
    category, message = result["warned"][0]
    assert category == "RuntimeWarning"
    assert "after TensorFlow was imported" in message
    for name, value in (("TF_CPP_MIN_LOG_LEVEL", "3"), ("TF_ENABLE_ONEDNN_OPTS", "0")):
        assert (f"{name}={value}" in message) == (name in result["unset"])


@pytest.mark.parametrize("seed", [-1, 1.5, True, "0"])
def test_set_up_rejects_a_bad_seed(seed: object) -> None:
    import gradclinic

    with pytest.raises(ValueError, match="seed must be a non-negative int"):
        gradclinic.set_up(seed=seed)
