"""What the dynamic layers share beyond their convolution arguments (``conv.ConvArgs``).

``AttentionState``: the attention of the last forward (``attention``, a copy), gradients
accumulated by name, and the backward whose functional pass screens dy itself: it consumes the
matching forward call only once dy passed the screen, so a refused dy (NaN/inf) leaves the call
for a valid one, as every layer's backward does.

``Temperature``: the softmax (or sigmoid) temperature tau, checked against the layer's dtype,
settable between steps and saved in the state dict as a state scalar ("temperature").

``BranchNorm``: the BatchNorm inside an attention branch (ODConv, DCD, FDY): eps and momentum,
gamma/beta parameters with running statistics as buffers, updated after every training-mode
forward with PyTorch's momentum rule (``functional.batchnorm.running_stats_update``).

Mixins: put them before ``Module`` among the bases; the layer sets ``dtype`` before
``temperature``.
"""
import numpy as np

from .._validation import check_real, check_temperature
from ..functional.batchnorm import batchnorm_stage, running_stats_update


def copied(value):
    """A copy of an array, of a dict of arrays, or None."""
    if value is None:
        return None
    if isinstance(value, dict):
        return {key: array.copy() for key, array in value.items()}
    return value.copy()


class AttentionState:
    """The last forward's attention, accumulation by name, and the screened backward."""

    _attention = None  # set by each forward

    @property
    def attention(self):
        """The attention of the last forward (a copy: changing it changes nothing else)."""
        return copied(self._attention)

    def _accumulate(self, grads):
        for name, grad in grads.items():
            self.accumulate_grad(name, grad)

    def _screened_backward(self, backward, dy):
        """``backward(dy, cache)`` for the latest unmatched forward, where ``backward`` screens
        dy for NaN/inf itself (through a sum it makes anyway): the call is consumed only after
        it returned, so a refused dy leaves it for a valid one."""
        result = backward(*self._recall(dy, finite=False, consume=False))
        self._calls.pop()
        return result


class Temperature:
    """tau (> 0, at least the dtype's smallest normal), saved as state scalar "temperature"."""

    @property
    def temperature(self):
        """Temperature tau (> 0) dividing the attention's logits; settable between steps (the
        dynamic convolution paper anneals it 30 -> 1)."""
        return self._temperature

    @temperature.setter
    def temperature(self, value):
        self._temperature = check_temperature(value, self.dtype)

    def state_scalars(self):
        return {"temperature": self.temperature}

    def load_state_scalar(self, name, value):
        self.check_state_scalar(name, value)
        self.temperature = value

    def check_state_scalar(self, name, value):
        if name != "temperature":
            raise KeyError(name)
        check_temperature(value, self.dtype)


class BranchNorm:
    """BatchNorms in the attention branch: ``_init_branch_norm`` checks eps and momentum,
    ``_add_branch_norm(prefix, width)`` registers "<prefix>_weight" (ones), "<prefix>_bias"
    (zeros) and the buffers "<prefix>_running_mean" (zeros), "<prefix>_running_var" (ones),
    ``_branch_norm_stage`` is the mode's BatchNorm for the functional pass and
    ``_update_running_stats`` applies the momentum rule."""

    def _init_branch_norm(self, eps, momentum):
        self.eps = check_real(eps, "eps", low=0, low_open=True)
        self.momentum = check_real(momentum, "momentum", low=0, high=1)

    def _add_branch_norm(self, prefix, width):
        self.add_param(f"{prefix}_weight", np.ones(width, dtype=self.dtype))
        self.add_param(f"{prefix}_bias", np.zeros(width, dtype=self.dtype))
        self.buffers[f"{prefix}_running_mean"] = np.zeros(width, dtype=self.dtype)
        self.buffers[f"{prefix}_running_var"] = np.ones(width, dtype=self.dtype)

    def _branch_norm_stage(self):
        """The mode's BatchNorm stage (``functional.batchnorm.batchnorm_stage``): batch
        statistics in training mode, the running ones (``buffers``) in evaluation mode."""
        return batchnorm_stage(self.params, self.eps, None if self.training else self.buffers)

    def _update_running_stats(self, batch_stats):
        """batch_stats {prefix: (batch mean, biased batch variance, count)}, as the training
        forward's cache gives them (empty in evaluation mode); in place."""
        for prefix, (mean, var, count) in batch_stats.items():
            running_mean = self.buffers[f"{prefix}_running_mean"]
            running_var = self.buffers[f"{prefix}_running_var"]
            running_mean[...], running_var[...] = running_stats_update(
                running_mean, running_var, mean, var, count, self.momentum)
