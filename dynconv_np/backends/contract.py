"""The backend contract, as code: what every backend module provides.

Arrays arrive validated by the functional front-end: C-contiguous and writeable, one floating
dtype (float32 or float64), consistent shapes; ``stride``, ``padding``, ``dilation`` are tuples
of two ints and ``groups`` an int. Outputs have the inputs' dtype, and the caller may keep them
(a backend returns fresh arrays, never views of its scratch memory). ``reference.py`` (NumPy) is
the judge: every backend must agree with it (``tests/backends/test_contract.py``).

Shapes: x (N, C_in, H, W); w (Nw, C_out, C_in/groups, kh, kw) with Nw = N (one kernel per
sample: dynamic convolution) or Nw = 1 (one kernel for the batch: static convolution);
b (Nw, C_out) or None; y and dy (N, C_out, H_out, W_out).
"""
from typing import Optional, Protocol, Tuple, runtime_checkable

Array = object  # a NumPy array, or (backend "cuda") a device array
Pair = Tuple[int, int]


@runtime_checkable
class Backend(Protocol):
    """Required members of a backend module (``get_backend(name)`` returns one)."""

    NAME: str

    def conv2d_forward(self, x: Array, w: Array, b: Optional[Array], stride: Pair,
                       padding: Pair, dilation: Pair, groups: int) -> Array:
        """y[n, o] = b[nw, o] + sum_{c,i,j} w[nw, o, c, i, j] x_pad[n, g Cg + c, h s0 + i d0,
        w s1 + j d1], nw = n (Nw = N) or 0 (Nw = 1)."""

    def conv2d_backward(self, dy: Array, x: Array, w: Array, stride: Pair, padding: Pair,
                        dilation: Pair, groups: int, has_bias: bool
                        ) -> Tuple[Array, Array, Optional[Array]]:
        """(dx like x, dw like w (summed over the batch when Nw = 1), db (Nw, C_out) or None)."""

    def aggregate_forward(self, pi: Array, weight: Array, bias: Optional[Array]
                          ) -> Tuple[Array, Optional[Array]]:
        """(W_n, b_n): W_n = sum_k pi[n, k] weight[k], b_n = sum_k pi[n, k] bias[k]; pi (N, K)
        is a host array; weight (K, ...), bias (K, C_out) or None."""

    def aggregate_backward(self, dw_n: Array, db_n: Optional[Array], pi: Array, weight: Array,
                           bias: Optional[Array]) -> Tuple[Array, Array, Optional[Array]]:
        """(dpi, dweight, dbias): dpi[n, k] = <dW_n, W_k> + <db_n, b_k> (a host array),
        dweight[k] = sum_n pi[n, k] dW_n, dbias[k] = sum_n pi[n, k] db_n (None without bias)."""

    def spatial_mean(self, x: Array) -> Array:
        """pooled (N, C) = mean of x over (H, W), a host array."""

    def add_spatial_mean_grad(self, dx: Array, dpooled: Array) -> None:
        """In place, into a dx this backend allocated: dx[n, c] += dpooled[n, c] / (H W)."""


REQUIRED_FUNCTIONS = ("conv2d_forward", "conv2d_backward", "aggregate_forward",
                      "aggregate_backward", "spatial_mean", "add_spatial_mean_grad")

OPTIONAL_FUNCTIONS = {
    # the attention branch as one call on host arrays (the numba engine: numba_fast/attention.py);
    # without it, functional/attention.py composes the branch from its stages (the reference)
    "attention_forward": "(pooled, w1, b1, w2, b2, tau) -> (pi, hidden)",
    "attention_backward": "(dpi, pi, hidden, pooled, w1, w2, tau) -> (dpooled, dw1, db1, dw2, db2)",
    # availability check, called once by get_backend (cuda: raises without a GPU)
    "ensure_available": "() -> None",
    # device backends only: where arrays live
    "to_device": "(a) -> device array",
    "to_host": "(a) -> numpy array",
    "add_into": "(dst, src) -> None, dst += src in place",
}
