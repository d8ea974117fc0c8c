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
        if not lr > 0:
            raise ValueError(f"lr must be > 0; received {lr!r}")
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must be in [0, 1); received {momentum!r}")
        if nesterov and momentum == 0:
            raise ValueError("nesterov=True needs momentum > 0; received momentum=0")
        if not weight_decay >= 0:
            raise ValueError(f"weight_decay must be >= 0; received {weight_decay!r}")
        self.lr, self.momentum, self.nesterov = float(lr), float(momentum), bool(nesterov)
        self.weight_decay = float(weight_decay)
        self.parameters = list(model.named_parameters())
        if not self.parameters:
            raise ValueError(f"{type(model).__name__} has no parameters to optimise")
        names = [name for name, _, _ in self.parameters]
        if len(set(names)) != len(names):
            raise ValueError("parameter names must be unique; model.named_parameters() "
                             f"repeats {sorted({n for n in names if names.count(n) > 1})}")
        self.velocity = {}

    def step(self):
        """Apply one update to every parameter (in place) from its current gradient."""
        for name, param, grad in self.parameters:
            g = grad
            if self.weight_decay and decays(name, param):
                g = g + param.dtype.type(self.weight_decay) * param
            if self.momentum:
                v = self.velocity.get(name)
                if v is None:
                    v = self.velocity[name] = np.array(g, dtype=param.dtype, copy=True)
                else:
                    v *= param.dtype.type(self.momentum)
                    v += g
                g = g + param.dtype.type(self.momentum) * v if self.nesterov else v
            param -= param.dtype.type(self.lr) * g

    def state_dict(self):
        """{name: momentum buffer} (copies), for checkpoints."""
        return {name: v.copy() for name, v in self.velocity.items()}

    def load_state_dict(self, state):
        """Restore momentum buffers saved by ``state_dict`` (names and shapes must match)."""
        shapes = {name: param.shape for name, param, _ in self.parameters}
        unknown = sorted(set(state) - set(shapes))
        if unknown:
            raise ValueError(f"optimizer state has buffers for unknown parameters {unknown}")
        for name, value in state.items():
            if value.shape != shapes[name]:
                raise ValueError(f"optimizer buffer {name!r} must have shape {shapes[name]}; "
                                 f"received {value.shape}")
        self.velocity = {name: np.array(value, copy=True) for name, value in state.items()}
