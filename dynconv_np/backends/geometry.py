"""Convolution geometry shared by every backend.

For one spatial axis with input size ``H``, kernel size ``k``, stride ``s``,
padding ``p`` and dilation ``d`` the output size is (PyTorch's ``Conv2d``)::

    H_out = floor((H + 2 p - d (k - 1) - 1) / s) + 1

and output position ``o`` reads input row ``o * s - p + i * d`` for kernel
tap ``i``.
"""


def conv_output_size(size, kernel, stride, padding, dilation):
    """Output length of one spatial axis (formula in the module docstring)."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def conv_output_shape(x_shape, w_shape, stride, padding, dilation):
    """(N, C_out, H_out, W_out) for x (N, C_in, H, W) and w (Nw, C_out, Cg, kh, kw)."""
    n, _, h, w = x_shape
    c_out, kh, kw = w_shape[1], w_shape[3], w_shape[4]
    return (n, c_out,
            conv_output_size(h, kh, stride[0], padding[0], dilation[0]),
            conv_output_size(w, kw, stride[1], padding[1], dilation[1]))
