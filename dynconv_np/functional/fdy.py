"""Frequency dynamic convolution (FDY): Nam, Kim, Ko and Park, "Frequency Dynamic Convolution:
Frequency-Adaptive Pattern Recognition for Sound Event Detection", Interspeech 2022
(arXiv 2203.15296); official code github.com/frednam93/FDY-SED, ``utils/model.py``
(``Dynamic_conv2d`` and ``attention2d`` with ``pool_dim='time'``, as its configs/config.yaml sets).

Axes. x is (N, C_in, T, F): H is time (frames) and W is frequency, the official convention
(``CRNN.forward`` transposes the (N, freqs, frames) spectrogram to [bs, chan, frames, freqs]).
The attention is per frequency bin f and the same at every time t.

The paper's frequency-adaptive kernel (its Eqs. for W(f) and pi(f); from memory of the paper,
whose numbering could not be checked here):

    W(f) = sum_k pi_k(f) W_k,      y[:, t, f] = (W(f) * x)[:, t, f]

A convolution is linear in its kernel, so evaluating the kernel W(f) only at output column f is
mixing the K outputs per frequency - which is what the official code computes (one
convolution with K C_out outputs, then a weighted sum), and what is computed here:

    o[n, k]        = conv2d(x[n], W_k) + b_k                    K convolutions (one call)
    y[n, :, t, f]  = sum_k pi[n, k, f] o[n, k, :, t, f]          output mixing

So an FDY layer costs K convolutions, not one plus an aggregation. The kernels could be
aggregated per (sample, output column) instead - fewer multiply-adds whenever T' > K / (K - 1) -
but a convolution whose kernel changes with the output column is no standard convolution call
(the cost note: ``nn.fdy.extra_costs``).

The attention branch (``attention2d``, pool_dim='time'):

    pooled[n, c, f] = mean_t x[n, c, t, f]                        temporal average pooling
    h   = relu(BN(conv1d(pooled, W1; k_f, s_f, p_f, d_f)))        (N, hidden, F'), no bias
    z   = conv1d(h, W2; 1) + b2                                   (N, K, F'), 1 x 1 with bias
    pi[n, :, f] = softmax(z[n, :, f] / tau)                       over K, temperature tau

conv1d1 takes the frequency components (index 1) of the 2-D convolution's kernel size, stride,
padding (and dilation), exactly so that its output length is the 2-D output's F' (the official
code asserts this); hidden = max(int(C_in / 4), 4); tau = 31 in the official config (constant,
no annealing). BN is ``BatchNorm1d`` over (N, F') per hidden channel: batch statistics in
training mode, running ones in eval mode, hence two functional pairs, ``fdy_conv2d_train_*``
and ``fdy_conv2d_eval_*``. Generalisations beyond the official code (dense, square, undilated):
pairs for kernel/stride/padding, dilation (conv1d1 uses the frequency dilation), groups
(the K kernels are grouped; the branch stays dense). The official bias is off by default and
left uninitialised when on (``torch.Tensor``); here it is initialised like the kernels.

Backward, each stage's own:

    do[n, k, :, :, f] = pi[n, k, f] dy[n, :, :, f]
    dpi[n, k, f]      = sum_{o,t} dy[n, o, t, f] o[n, k, o, t, f]
    dx = conv backward of do (dW_k, db_k)  +  dpooled[n, c, f] / T  (broadcast over t)
    dpooled, dW1, dBN, dW2, db2 <- softmax', 1 x 1 conv, ReLU, BN (mode), conv1d backward

Host backends only (numpy, loops, numba).
"""
import numpy as np

from .activations import _relu_backward, _relu_forward
from .batchnorm import (batch_stats, batchnorm_stage, batchnorm_stage_backward,
                        check_running_stats)
from .conv import _conv_backward, _conv_forward, check_kernel_bank, conv_geometry
from .softmax import _softmax_backward, _softmax_forward
from .._validation import (check_finite_via, check_float_array, check_host_backend,
                           check_named_arrays, check_param_names, check_real,
                           check_temperature, check_upstream, contiguous, stage_cache)
from ..backends import DEFAULT_BACKEND, check_placement
from ..backends.geometry import conv_output_size

FDY_PARAMS = ("weight", "bias", "conv1_weight", "bn_weight", "bn_bias", "conv2_weight",
              "conv2_bias")
FDY_BUFFERS = ("bn_running_mean", "bn_running_var")
_POINTWISE = ((1, 1), (0, 0), (1, 1), 1)


def fdy_conv2d_train_forward(x, params, tau, stride=1, padding=0, dilation=1, groups=1,
                             eps=1e-5, backend=DEFAULT_BACKEND):
    """y = FDY layer of x, the branch's BatchNorm on batch statistics -> (y, cache).

    x (N, C_in, T, F); params: "weight" (K, C_out, C_in/groups, kh, kw), optional "bias"
    (K, C_out), "conv1_weight" (hidden, C_in, kw), "bn_weight", "bn_bias" (hidden,),
    "conv2_weight" (K, hidden), "conv2_bias" (K,); tau > 0. ``cache["pi"]`` is the attention
    (N, K, F_out); ``cache["batch_stats"]`` = {"bn": (mean, var, count)}.
    """
    x, tau, geometry, module = _check_call(x, params, tau, stride, padding, dilation, groups,
                                           eps, backend)
    check_train_batch(x, params["weight"].shape[4], geometry, "FDY")
    y, cache = _fdy_conv2d_forward(x, params, tau, geometry, module, batchnorm_stage(params, eps))
    screen_x(x, cache)
    return y, stage_cache("fdy_conv2d_train", cache, y)


def fdy_conv2d_train_backward(dy, cache):
    """(dx, grads): grads has a key per parameter in the forward's ``params``."""
    return _fdy_conv2d_backward(check_upstream(cache, "fdy_conv2d_train", dy=dy), cache)


def fdy_conv2d_eval_forward(x, params, buffers, tau, stride=1, padding=0, dilation=1, groups=1,
                            eps=1e-5, backend=DEFAULT_BACKEND):
    """y = FDY layer of x, the branch's BatchNorm on running statistics -> (y, cache).
    buffers: "bn_running_mean", "bn_running_var" (hidden,); otherwise as the training pair."""
    x, tau, geometry, module = _check_call(x, params, tau, stride, padding, dilation, groups,
                                           eps, backend)
    check_fdy_buffers(buffers, params["conv1_weight"].shape[0], np.dtype(x.dtype))
    y, cache = _fdy_conv2d_forward(x, params, tau, geometry, module,
                                   batchnorm_stage(params, eps, buffers))
    screen_x(x, cache)
    return y, stage_cache("fdy_conv2d_eval", cache, y)


def fdy_conv2d_eval_backward(dy, cache):
    """(dx, grads) of ``fdy_conv2d_eval_forward`` (running statistics are constants)."""
    return _fdy_conv2d_backward(check_upstream(cache, "fdy_conv2d_eval", dy=dy), cache)


# -- validation -----------------------------------------------------------------------------
def check_fdy_params(params, x, geometry):
    """Every parameter by name (shapes in ``fdy_conv2d_train_forward``), finite, x's dtype; x
    against the kernels and the geometry. ValueError/TypeError naming what is wrong."""
    check_param_names(params, FDY_PARAMS, "FDY")
    num_kernels, _ = check_kernel_bank(x, params["weight"], params.get("bias"), geometry)
    hidden = check_float_array(params["conv1_weight"], "conv1_weight", ndim=3).shape[0]
    shapes = {"conv1_weight": (hidden, x.shape[1], params["weight"].shape[4]),
              "bn_weight": (hidden,), "bn_bias": (hidden,),
              "conv2_weight": (num_kernels, hidden), "conv2_bias": (num_kernels,)}
    check_named_arrays(params, shapes, np.dtype(x.dtype))


def check_fdy_buffers(buffers, hidden, dtype):
    """The branch BatchNorm's running statistics, (hidden,), finite, of ``dtype``; the running
    variance >= 0."""
    if not isinstance(buffers, dict):
        raise TypeError(f"buffers must be a dict of the running statistics {FDY_BUFFERS}; "
                        f"received {type(buffers).__name__}")
    check_running_stats(buffers, {name: (hidden,) for name in FDY_BUFFERS}, dtype)


def check_train_batch(x, kernel_width, geometry, what):
    """The branch's BatchNorm on batch statistics normalises over (N, F_out): N F_out > 1."""
    (_, s_f), (_, p_f), (_, d_f), _ = geometry
    f_out = conv_output_size(x.shape[3], kernel_width, s_f, p_f, d_f)
    if x.shape[0] * f_out < 2:
        raise ValueError(f"{what} in training mode normalises its attention branch with batch "
                         f"statistics over (N, F_out) and needs N F_out > 1; received x shape "
                         f"{tuple(x.shape)} (F_out = {f_out})")


def screen_x(x, cache):
    """The NaN/inf screen of x, through the time means the branch computes anyway (their mean
    over frequency is x's mean over (T, F))."""
    check_finite_via(x, "x", cache["pooled"].mean(axis=2), "mean")


def _check_call(x, params, tau, stride, padding, dilation, groups, eps, backend):
    geometry = conv_geometry(stride, padding, dilation, groups)
    check_fdy_params(params, x, geometry)
    tau = check_temperature(tau, x.dtype)
    check_real(eps, "eps", low=0)
    module = check_host_backend(backend, "fdy_conv2d")
    check_placement(module, x=x)
    return contiguous(x), tau, geometry, module


# -- the K kernels as one convolution with K C_out outputs -----------------------------------
def _stack(a, groups):
    """(K, C_out, ...) -> (G K Cog, ...): group g's block holds every kernel's slice of group g,
    so a G-grouped convolution with the stacked kernels computes the K convolutions at once."""
    k, c_out = a.shape[:2]
    grouped = a.reshape((k, groups, c_out // groups) + a.shape[2:]).swapaxes(0, 1)
    return np.ascontiguousarray(grouped).reshape((k * c_out,) + a.shape[2:])


def _unstack(a, k, groups):
    """The inverse of ``_stack``: (G K Cog, ...) -> (K, C_out, ...)."""
    grouped = a.reshape((groups, k, a.shape[0] // (groups * k)) + a.shape[1:]).swapaxes(0, 1)
    return np.ascontiguousarray(grouped).reshape((k, a.shape[0] // k) + a.shape[1:])


# -- the attention branch: pooled (N, C_in, F) -> pi (N, K, F') -----------------------------
def _fdy_attention_forward(pooled, params, tau, geometry, module, normalise):
    (_, s_f), (_, p_f), (_, d_f), _ = geometry
    conv1_geometry = ((1, s_f), (0, p_f), (1, d_f), 1)
    z1, conv1_cache = _conv_forward(pooled[:, :, None, :], params["conv1_weight"][:, :, None, :],
                                    None, conv1_geometry, module, per_sample=False)
    h_bn, bn = normalise(z1)
    h, relu_cache = _relu_forward(h_bn)
    logits, conv2_cache = _conv_forward(h, params["conv2_weight"][:, :, None, None],
                                        params["conv2_bias"], _POINTWISE, module,
                                        per_sample=False)
    pi_fk, softmax_cache = _softmax_forward(logits[:, :, 0, :].transpose(0, 2, 1), tau)
    return np.ascontiguousarray(pi_fk.transpose(0, 2, 1)), {
        "conv1": conv1_cache, "bn": bn, "relu": relu_cache, "conv2": conv2_cache,
        "softmax": softmax_cache}


def _fdy_attention_backward(dpi, cache):
    dlogits = _softmax_backward(dpi.transpose(0, 2, 1), cache["softmax"])   # (N, F', K)
    dh, dconv2_weight, dconv2_bias = _conv_backward(
        np.ascontiguousarray(dlogits.transpose(0, 2, 1))[:, :, None, :], cache["conv2"])
    dz1, dbn_weight, dbn_bias = batchnorm_stage_backward(_relu_backward(dh, cache["relu"]),
                                                         cache["bn"])
    dpooled, dconv1_weight, _ = _conv_backward(dz1, cache["conv1"])
    return dpooled[:, :, 0, :], {"conv1_weight": dconv1_weight[:, :, 0, :], "bn_weight": dbn_weight,
                                 "bn_bias": dbn_bias, "conv2_weight": dconv2_weight[:, :, 0, 0],
                                 "conv2_bias": dconv2_bias}


# -- the layer -------------------------------------------------------------------------------
def _fdy_conv2d_forward(x, params, tau, geometry, module, normalise):
    """The math of the module docstring; ``normalise`` is the mode's BatchNorm."""
    pooled = x.mean(axis=2)                                    # (N, C_in, F), mean over time
    pi, attention_cache = _fdy_attention_forward(pooled, params, tau, geometry, module, normalise)
    weight, bias = params["weight"], params.get("bias")
    k, groups = weight.shape[0], geometry[3]
    stacked, conv_cache = _conv_forward(x, _stack(weight, groups),
                                        None if bias is None else _stack(bias, groups),
                                        geometry, module, per_sample=False)
    outputs = np.ascontiguousarray(_unstack(stacked.swapaxes(0, 1), k, groups)
                                   .transpose(2, 0, 1, 3, 4))
    # outputs (N, K, C_out, T', F'): o[n, k] = conv2d(x[n], W_k) + b_k
    y = np.einsum("nkotf,nkf->notf", outputs, pi)
    stats = batch_stats(attention_cache["bn"])
    stats = {} if stats is None else {"bn": stats}
    return y, {"pi": pi.copy(), "pooled": pooled, "batch_stats": stats,
               "kernel_outputs": outputs, "time_steps": x.shape[2],
               "attention": attention_cache, "conv": conv_cache,
               "groups": groups}


def _fdy_conv2d_backward(dy, cache):
    pi, outputs, groups = cache["pi"], cache["kernel_outputs"], cache["groups"]
    k = pi.shape[1]
    dpi = np.einsum("notf,nkotf->nkf", dy, outputs)
    doutputs = dy[:, None] * pi[:, :, None, None, :]          # (N, K, C_out, T', F')
    dstacked = np.ascontiguousarray(_stack(doutputs.transpose(1, 2, 0, 3, 4), groups)
                                    .swapaxes(0, 1))
    dx, dweight, dbias = _conv_backward(dstacked, cache["conv"])
    dpooled, grads = _fdy_attention_backward(dpi, cache["attention"])
    dx += dpooled[:, :, None, :] / dx.dtype.type(cache["time_steps"])
    grads["weight"] = _unstack(dweight, k, groups)
    if dbias is not None:
        grads["bias"] = _unstack(dbias, k, groups)
    return dx, grads
