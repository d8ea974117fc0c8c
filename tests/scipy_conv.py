"""An independent convolution for cross-checks: scipy.signal.correlate, one channel group at a
time, with padding, dilation (a zero-stuffed kernel) and stride (subsampling) done by hand."""
import numpy as np
from scipy.signal import correlate

from .strategies import pair


def scipy_conv2d(x, weight, bias, stride, padding, dilation, groups):
    """y (N, C_out, H_out, W_out) for x (N, C_in, H, W), weight (C_out, C_in/groups, kh, kw)."""
    (sh, sw), (ph, pw), (dh, dw) = pair(stride), pair(padding), pair(dilation)
    c_out, c_group, kh, kw = weight.shape
    c_out_group = c_out // groups
    x_pad = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    dilated = np.zeros((c_out, c_group, dh * (kh - 1) + 1, dw * (kw - 1) + 1))
    dilated[:, :, ::dh, ::dw] = weight
    rows = []
    for n in range(x.shape[0]):
        channels = []
        for o in range(c_out):
            g = o // c_out_group
            full = correlate(x_pad[n, g * c_group:(g + 1) * c_group], dilated[o], mode="valid")[0]
            channels.append(full[::sh, ::sw] + (0.0 if bias is None else bias[o]))
        rows.append(channels)
    return np.array(rows)
