"""Stochastic gradient descent with momentum, Nesterov momentum and decoupled-from-BN weight decay.

For every parameter p with gradient g (the update of PyTorch's ``torch.optim.SGD``):

    g   <- g + lambda p                   (weight decay, only where ``decays(name, p)``)
    v   <- mu v + g                       (v = g on the first step)
    d   <- g + mu v   (Nesterov)   or   d <- v   (classical momentum)
    p   <- p - lr d

Which parameters decay: weight decay is an L2 pull towards zero meant for the weights that
multiply inputs. Shifts (biases) and BatchNorm's scale and shift are not decayed, as in the
common practice for training MobileNets and ResNets. The rule, by parameter name and ndim:

    no decay  if the local name ends in "bias" (bias, fc1_bias, fc2_bias of the dynamic layers,
              including a dynamic layer's (K, C_out) bias bank) or the parameter is 1-D (BatchNorm
              weight/bias, which are (C,));
    decay     otherwise (convolution, linear and dynamic kernel banks, attention FC weights).

Parameters are updated in place, so the layers keep holding the same arrays.
"""
import numpy as np

from .._validation import check_real


def decays(name, param):
    """True when weight decay applies to parameter ``name`` (see the module docstring)."""
    return not (name.rsplit(".", 1)[-1].endswith("bias") or param.ndim <= 1)


class SGD:
    """SGD over every parameter of ``model`` (a Module: ``named_parameters()`` gives the arrays).

    Parameters
    ----------
    model : Module.
    lr : float > 0, the learning rate (a schedule may overwrite ``optimizer.lr`` every step).
    momentum : float in [0, 1).
    nesterov : bool; needs momentum > 0.
    weight_decay : float >= 0, lambda above.
    """

    def __init__(self, model, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
        from ..nn.module import Module
        if not isinstance(model, Module):
            raise TypeError(f"model must be a dynconv_np.nn.Module; received {type(model).__name__}")
        self.lr = check_real(lr, "lr", low=0, low_open=True)
        self.momentum = check_real(momentum, "momentum", low=0, high=1, high_open=True)
        if not isinstance(nesterov, (bool, np.bool_)):
            raise TypeError(f"nesterov must be True or False; received {nesterov!r}")
        if nesterov and self.momentum == 0:
            raise ValueError("nesterov=True needs momentum > 0; received momentum=0")
        self.nesterov = bool(nesterov)
        self.weight_decay = check_real(weight_decay, "weight_decay", low=0)
        self.model = model
        if not list(model.named_parameters()):
            raise ValueError(f"{type(model).__name__} has no parameters to optimise")
        self.velocity = {}

    @property
    def parameters(self):
        """(name, param, grad) of every parameter, read from the model at each call (so a
        parameter array replaced through ``params`` is the one updated)."""
        return list(self.model.named_parameters())

    def step(self):
        """Apply one update to every parameter (in place) from its current gradient.

        Every gradient is checked first (its parameter's shape, finite): a bad one raises
        ValueError naming it before any parameter changes."""
        parameters = self.parameters
        for name, param, grad in parameters:
            if grad.shape != param.shape:
                raise ValueError(f"gradient of {name} has shape {grad.shape}; its parameter is "
                                 f"{param.shape}")
            if isinstance(grad, np.ndarray) and not np.isfinite(grad).all():
                raise ValueError(f"gradient of {name} contains NaN or inf; no parameter was "
                                 "updated")
        for name, param, grad in parameters:
            g = grad
            if self.weight_decay and decays(name, param):
                g = g + param.dtype.type(self.weight_decay) * param
            if self.momentum:
                v = self.velocity.get(name)
                if v is None or v.shape != param.shape:
                    v = self.velocity[name] = np.array(g, dtype=param.dtype, copy=True)
                else:
                    v *= param.dtype.type(self.momentum)
                    v += g
                g = g + param.dtype.type(self.momentum) * v if self.nesterov else v
            param -= param.dtype.type(self.lr) * g

    def state_dict(self):
        """{name: momentum buffer} (copies), for checkpoints."""
        return {name: v.copy() for name, v in self.velocity.items()}

    def check_state_dict(self, state):
        """ValueError unless ``state`` fits: a buffer per known parameter, of its shape and dtype."""
        params = {name: param for name, param, _ in self.parameters}
        unknown = sorted(set(state) - set(params))
        if unknown:
            raise ValueError(f"optimizer state has buffers for unknown parameters {unknown}")
        for name, value in state.items():
            if value.shape != params[name].shape or value.dtype != params[name].dtype:
                raise ValueError(f"optimizer buffer {name!r} must be {params[name].dtype} "
                                 f"{params[name].shape}; received {value.dtype} {value.shape}")

    def load_state_dict(self, state):
        """Restore momentum buffers saved by ``state_dict`` (checked first, all or nothing)."""
        self.check_state_dict(state)
        self.velocity = {name: np.array(value, copy=True) for name, value in state.items()}

    @property
    def lr(self):
        """The learning rate (finite, > 0); a schedule may set it every step."""
        return self._lr

    @lr.setter
    def lr(self, value):
        self._lr = check_real(value, "lr", low=0, low_open=True)
