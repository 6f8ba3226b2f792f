"""A bump layer that trains a transform of sigma (log sigma or softplus^-1 sigma) instead of sigma."""

from __future__ import annotations

import math
from typing import Any, Literal

import keras
import tensorflow as tf

from gradclinic.bump import BumpLayer, Guard

Parametrisation = Literal["plain", "log", "softplus"]
PARAMETRISATIONS: tuple[str, ...] = ("plain", "log", "softplus")


def _softplus_inverse(sigma: float) -> float:
    # log(exp(s) - 1) written with expm1 so small sigma keeps its precision; beyond 30 the
    # two agree to float64 precision and exp would overflow past 709.
    return sigma if sigma > 30 else math.log(math.expm1(sigma))


_TO_RAW = {"log": math.log, "softplus": _softplus_inverse}
_TO_SIGMA = {"log": tf.exp, "softplus": tf.nn.softplus}


@keras.saving.register_keras_serializable(package="gradclinic")
class ReparamBumpLayer(BumpLayer):
    """BumpLayer whose trainable weight is raw_sigma, with sigma = exp(raw) or softplus(raw) > 0."""

    def __init__(
        self,
        parametrisation: Literal["log", "softplus"] = "log",
        guard: Guard = "stable",
        initial_sigma: float = 0.1,
        **kwargs: Any,
    ):
        super().__init__(guard, initial_sigma=initial_sigma, **kwargs)
        if parametrisation not in _TO_RAW:
            raise ValueError(
                f"parametrisation must be one of {', '.join(_TO_RAW)}; got {parametrisation!r}"
            )
        self.parametrisation = parametrisation

    def build(self, input_shape: Any) -> None:
        # No NonNeg constraint: the transform keeps sigma positive, so the optimiser never
        # sees a clipped step.
        self.raw_sigma = self.add_weight(
            name="raw_sigma",
            shape=(1,),
            initializer=keras.initializers.Constant(
                _TO_RAW[self.parametrisation](self.initial_sigma)
            ),
            trainable=True,
        )

    @property
    def sigma(self) -> tf.Tensor:
        """The bump's threshold sigma, computed from the trainable raw_sigma."""
        return _TO_SIGMA[self.parametrisation](self.raw_sigma)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "parametrisation": self.parametrisation}
