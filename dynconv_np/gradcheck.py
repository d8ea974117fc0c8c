"""Check hand-written backward passes against numerical derivatives (needs only NumPy).

With a random upstream gradient G (standard normal, never all-ones: an all-ones G hides errors
that sum to zero, e.g. in a softmax) the scalar L(theta) = sum(f(theta) * G) has gradient
dL/dtheta = backward(G). Three ways to get it numerically:

* ``mode="central"``: central differences, element by element, in float64:
      dL/dtheta_i ~ (L(theta + eps e_i) - L(theta - eps e_i)) / (2 eps),   eps = 1e-6
  truncation error O(eps^2 |L'''|), round-off O(u |L| / eps) with u = 2.2e-16: about 1e-10
  relative for smooth, O(1)-scaled functions.
* ``mode="complex"``: the complex step, for functions that accept complex input and are
  analytic in it (no abs, no complex conjugation):
      dL/dtheta_i = Im L(theta + i h e_i) / h,   h = 1e-20
  free of cancellation, so exact to machine precision.
* ``mode="directional"``: one random direction u per input (as torch's fast gradcheck):
      (L(theta + eps u) - L(theta - eps u)) / (2 eps)  vs  sum_inputs <dL/dtheta, u>
  two function evaluations however many parameters there are.

Elements pass when |numerical - analytical| <= atol + rtol * |numerical| (``np.allclose``'s rule),
where, for the difference modes, atol is raised to the round-off floor of the quotient itself:
evaluating L = sum_i y_i G_i in float64 carries an error of about u * sum_i |y_i G_i| (u = 2.2e-16),
and dividing a difference of two such values by 2 eps amplifies it, so the floor is

    noise = 8 u sum_i |y_i G_i| / eps

(8 covers the rounding inside y as well as in the sum). For a loss of a few thousand output
elements of size ~5 this is ~1e-6; a gradient error it would hide is smaller than that.

Two kinds of target:

* a function: ``gradcheck(forward, inputs={"x": x, "w": w}, backward=backward)`` where
  ``forward(**inputs)`` returns ``out`` or ``(out, cache)`` and ``backward(dout, cache)`` returns
  the gradients as a dict keyed like ``inputs`` or a tuple in the same order;
* a layer (an object with forward, backward, params and grads): ``gradcheck(layer, x)`` checks
  dx and every parameter's accumulated gradient. Put stochastic layers (dropout) in eval mode or
  fix their randomness first. The probes' forwards have no backward: a target with
  ``clear_calls()`` (every dynconv_np module; give a wrapper of one the same method) has their
  caches dropped after each probe.
"""
from dataclasses import dataclass, field

import numpy as np

from ._validation import _is_int, check_real

DEFAULT_EPS = {"central": 1e-6, "complex": 1e-20, "directional": 1e-6}


class GradcheckError(AssertionError):
    """Raised by ``gradcheck`` when an analytical gradient disagrees with the numerical one."""


@dataclass
class InputResult:
    """The comparison for one input: the worst element and the error at it."""
    name: str
    passed: bool
    max_abs_error: float
    max_rel_error: float
    worst_index: tuple
    numerical: float
    analytical: float
    checked: int
    size: int


@dataclass
class GradcheckReport:
    """Per-input results of one ``gradcheck`` call; ``bool(report)`` is True when all passed."""
    mode: str
    atol: float
    rtol: float
    results: list = field(default_factory=list)

    @property
    def passed(self):
        return all(r.passed for r in self.results)

    def __bool__(self):
        return self.passed

    def max_abs_error(self):
        return max((r.max_abs_error for r in self.results), default=0.0)

    def __str__(self):
        lines = [f"gradcheck ({self.mode}, atol={self.atol:.1e} incl. round-off floor, "
                 f"rtol={self.rtol:.0e}): {'PASSED' if self.passed else 'FAILED'}",
                 f"  {'input':<14}{'ok':<4}{'max abs err':>12}{'max rel err':>12}  worst element "
                 f"(numerical vs analytical)"]
        for r in self.results:
            subset = "" if r.checked == r.size else f"  [{r.checked}/{r.size} elements]"
            lines.append(f"  {r.name:<14}{'yes' if r.passed else 'NO':<4}{r.max_abs_error:>12.3e}"
                         f"{r.max_rel_error:>12.3e}  {r.worst_index}: {r.numerical:.10g} vs "
                         f"{r.analytical:.10g}{subset}")
        return "\n".join(lines)


def gradcheck(target, inputs, backward=None, *, mode="central", eps=None, atol=1e-7, rtol=1e-5,
              seed=0, max_elements=None, raise_exception=True):
    """Compare ``target``'s backward pass with numerical derivatives; return a GradcheckReport.

    Parameters
    ----------
    target : a forward function (then ``backward`` is required and ``inputs`` is a dict of
        float64 arrays) or a layer (then ``inputs`` is the input array x, float64).
    mode : "central", "complex" or "directional" (see the module docstring).
    eps : step; defaults to 1e-6 (central, directional) or 1e-20 (complex).
    atol, rtol : an element passes when |num - ana| <= atol + rtol |num|.
    seed : seeds the upstream gradient G, the directions and the element subsets.
    max_elements : check at most this many randomly chosen elements per input (None: all).
    raise_exception : raise GradcheckError on failure (else only report it).
    """
    eps, atol, rtol = _check_options(target, backward, mode, eps, atol, rtol, seed,
                                     max_elements, raise_exception)
    rng = np.random.default_rng(seed)
    problem = _LayerProblem(target, inputs) if backward is None else \
        _FunctionProblem(target, backward, inputs)
    analytical = problem.analytical(rng)
    if mode != "complex":
        atol += 8 * np.finfo(np.float64).eps * problem.loss_scale / eps
    report = GradcheckReport(mode, atol, rtol)
    if mode == "directional":
        report.results.append(_directional(problem, analytical, eps, atol, rtol, rng))
    else:
        for name, array in problem.arrays.items():
            numerical, indices = _elementwise(problem, name, array, mode, eps, max_elements, rng)
            report.results.append(_compare(name, numerical, analytical[name], indices,
                                           array.size, atol, rtol))
    if raise_exception and not report.passed:
        raise GradcheckError(_failure_message(report))
    return report


def _check_options(target, backward, mode, eps, atol, rtol, seed, max_elements,
                   raise_exception):
    """gradcheck's own arguments, each by name -> (eps, atol, rtol) as floats."""
    if not isinstance(mode, str) or mode not in DEFAULT_EPS:
        raise ValueError(f"mode must be one of {sorted(DEFAULT_EPS)}; received {mode!r}")
    if backward is not None and not callable(backward):
        raise TypeError(f"backward must be a function backward(dout, cache) -> gradients (or "
                        f"None for a layer target); received {type(backward).__name__}")
    if backward is not None and not callable(target):
        raise TypeError(f"target must be a forward function when backward is given; received "
                        f"{type(target).__name__}")
    if backward is None and mode == "complex":
        raise ValueError("mode='complex' needs a function target whose forward accepts "
                         "complex arrays (layers validate float dtypes); use 'central'")
    eps = DEFAULT_EPS[mode] if eps is None else check_real(eps, "eps", low=0, low_open=True)
    atol = check_real(atol, "atol", low=0)
    rtol = check_real(rtol, "rtol", low=0)
    if seed is not None and (not _is_int(seed) or seed < 0):
        raise TypeError(f"seed must be None or a non-negative int; received {seed!r}")
    if max_elements is not None and (not _is_int(max_elements) or max_elements < 1):
        raise ValueError(f"max_elements must be None or a positive int; received "
                         f"{max_elements!r}")
    if not isinstance(raise_exception, (bool, np.bool_)):
        raise TypeError(f"raise_exception must be True or False; received {raise_exception!r}")
    return eps, atol, rtol


def _failure_message(report):
    bad = [r for r in report.results if not r.passed]
    first = bad[0]
    return (f"Jacobian mismatch for input {first.name!r} at index {first.worst_index}: "
            f"numerical {first.numerical:.10g}, analytical {first.analytical:.10g} (abs error "
            f"{first.max_abs_error:.3e}, rel error {first.max_rel_error:.3e}); "
            f"failing inputs: {[r.name for r in bad]}\n{report}")


def _require_float64(name, array):
    """A finite float64 host array (finite differences in float32 are accurate to about 1e-3
    only; a NaN would make every comparison meaningless)."""
    if not isinstance(array, np.ndarray) or array.dtype != np.float64:
        received = f"dtype {array.dtype}" if isinstance(array, np.ndarray) else \
            type(array).__name__
        raise TypeError(f"gradcheck needs float64 arrays (finite differences in float32 are "
                        f"accurate to about 1e-3 only); {name} must be a float64 "
                        f"numpy.ndarray; received {received}")
    if not np.isfinite(array).all():
        raise ValueError(f"gradcheck needs finite inputs; {name} contains "
                         f"{int(np.sum(~np.isfinite(array)))} NaN or inf value(s)")


class _FunctionProblem:
    """L(inputs) = sum(forward(**inputs) * G) for a function with a user-supplied backward."""

    def __init__(self, forward, backward, inputs):
        if not isinstance(inputs, dict) or not inputs:
            received = "an empty dict" if isinstance(inputs, dict) else type(inputs).__name__
            raise TypeError("inputs must be a non-empty dict name -> float64 array when a "
                            f"backward function is given; received {received}")
        for name, array in inputs.items():
            if not isinstance(name, str) or not name.isidentifier():
                raise TypeError(f"inputs' keys must be the forward's argument names (str); "
                                f"received {name!r}")
            _require_float64(name, array)
        self.forward, self.backward = forward, backward
        self.arrays = {name: array.copy() for name, array in inputs.items()}

    def _run(self):
        result = self.forward(**self.arrays)
        if isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], np.ndarray):
            return result
        return result, None

    def analytical(self, rng):
        out, cache = self._run()
        self.upstream = rng.standard_normal(np.shape(out))
        self.loss_scale = float(np.sum(np.abs(out * self.upstream)))
        grads = self.backward(self.upstream, cache)
        if not isinstance(grads, dict):
            grads = dict(zip(self.arrays, grads if isinstance(grads, tuple) else (grads,)))
        missing = [name for name in self.arrays if grads.get(name) is None]
        if missing:
            raise ValueError(f"backward returned no gradient for inputs {missing}")
        return {name: np.asarray(grads[name], dtype=np.float64) for name in self.arrays}

    def loss(self):
        return np.sum(self._run()[0] * self.upstream)


class _LayerProblem:
    """L(x, params) = sum(layer.forward(x) * G) for an object with forward/backward/params/grads."""

    def __init__(self, layer, x):
        if callable(layer) and not hasattr(layer, "params"):
            raise TypeError(f"target {getattr(layer, '__name__', type(layer).__name__)} is a "
                            "function: pass backward=... too (or a layer, with forward/"
                            "backward/params/grads)")
        for attribute in ("forward", "backward", "params", "grads"):
            if not hasattr(layer, attribute):
                raise TypeError(f"target must be a function (with backward=...) or a layer with "
                                f"forward/backward/params/grads; {type(layer).__name__} has no "
                                f"{attribute!r}")
        _require_float64("x", x)
        self.layer = layer
        self.x = x.copy()
        self.parameters = _parameters(layer)
        for name, value, _ in self.parameters:
            _require_float64(name, value)
        self.arrays = {"x": self.x, **{name: value for name, value, _ in self.parameters}}

    def analytical(self, rng):
        for _, _, grad in self.parameters:
            grad[...] = 0
        self._forget_calls()
        out = self.layer.forward(self.x)
        self.upstream = rng.standard_normal(out.shape)
        self.loss_scale = float(np.sum(np.abs(out * self.upstream)))
        dx = self.layer.backward(self.upstream)
        grads = {"x": dx}
        grads.update({name: grad.copy() for name, _, grad in self.parameters})
        return grads

    def loss(self):
        value = np.sum(self.layer.forward(self.x) * self.upstream)
        self._forget_calls()  # the probes' forwards are never backpropagated
        return value

    def _forget_calls(self):
        clear = getattr(self.layer, "clear_calls", None)  # dynconv_np modules keep per-call caches
        if clear is not None:
            clear()


def _parameters(layer):
    """(name, param, grad) triples; the param arrays are the layer's own (perturbed in place)."""
    if hasattr(layer, "named_parameters"):
        return list(layer.named_parameters())
    return [(name, value, layer.grads[name]) for name, value in layer.params.items()]


def _elementwise(problem, name, array, mode, eps, max_elements, rng):
    """Numerical dL/d array[i] for the checked elements (perturbing the array in place)."""
    if not array.flags.c_contiguous:
        raise ValueError(f"gradcheck perturbs {name} in place and needs it C-contiguous")
    indices = np.arange(array.size)
    if max_elements is not None and array.size > max_elements:
        indices = np.sort(rng.choice(array.size, size=max_elements, replace=False))
    if mode == "complex":
        if isinstance(problem, _LayerProblem):
            raise ValueError("mode='complex' needs a function target whose forward accepts "
                             "complex arrays (layers validate float dtypes); use 'central'")
        problem.arrays[name] = array.astype(np.complex128)
    flat = problem.arrays[name].reshape(-1)
    numerical = np.empty(indices.size)
    for out_index, i in enumerate(indices):
        original = flat[i]
        if mode == "complex":
            flat[i] = original + 1j * eps
            numerical[out_index] = np.imag(problem.loss()) / eps
        else:
            flat[i] = original + eps
            plus = problem.loss()
            flat[i] = original - eps
            numerical[out_index] = (plus - problem.loss()) / (2 * eps)
        flat[i] = original
    problem.arrays[name] = array
    return numerical, indices


def _directional(problem, analytical, eps, atol, rtol, rng):
    """Compare (L(theta + eps u) - L(theta - eps u)) / (2 eps) with sum <grad, u>."""
    directions = {name: rng.standard_normal(a.shape) for name, a in problem.arrays.items()}
    originals = {name: a.copy() for name, a in problem.arrays.items()}

    def shift(sign):
        for name, a in problem.arrays.items():
            a[...] = originals[name] + sign * eps * directions[name]
        return problem.loss()

    numerical = (shift(+1) - shift(-1)) / (2 * eps)
    for name, a in problem.arrays.items():
        a[...] = originals[name]
    analytic = sum(float(np.sum(analytical[name] * directions[name])) for name in directions)
    return _compare("v.J.u (all)", np.array([numerical]), np.array([analytic]), np.array([0]),
                    1, atol, rtol, shape=())


def _compare(name, numerical, analytical_full, indices, size, atol, rtol, shape=None):
    analytical = np.asarray(analytical_full).reshape(-1)[indices]
    abs_error = np.abs(numerical - analytical)
    magnitude = np.maximum(np.abs(numerical), np.abs(analytical))
    rel_error = np.divide(abs_error, magnitude, out=np.zeros_like(abs_error),
                          where=magnitude > 0)  # relative to the larger value; 0/0 counts as 0
    excess = abs_error - (atol + rtol * np.abs(numerical))
    passed = bool(np.all(excess <= 0))
    worst = int(np.argmax(abs_error if passed else excess))
    full_shape = np.shape(analytical_full) if shape is None else shape
    worst_index = tuple(int(i) for i in np.unravel_index(indices[worst], full_shape)) \
        if full_shape else ()
    return InputResult(name=name, passed=passed,
                       max_abs_error=float(abs_error.max()), max_rel_error=float(rel_error.max()),
                       worst_index=worst_index, numerical=float(numerical[worst]),
                       analytical=float(analytical[worst]), checked=int(indices.size), size=size)
