"""Batch normalisation over the channels of an NCHW tensor (Ioffe and Szegedy 2015), as PyTorch's
``BatchNorm2d``.

Per channel c, over the M = N H W values x[:, c, :, :]:

Training (batch statistics):
    mean_c = 1/M sum x,    var_c = 1/M sum (x - mean_c)^2            (biased, used to normalise)
    xhat   = (x - mean_c) / sqrt(var_c + eps),    y = gamma_c xhat + beta_c
  backward, with every sum over (n, h, w) of channel c (the standard compact form):
    dbeta_c  = sum dy,    dgamma_c = sum dy xhat
    dx       = gamma_c / (M sqrt(var_c + eps)) (M dy - sum dy - xhat sum dy xhat)

Evaluation (running statistics, so y is an affine function of x):
    xhat = (x - running_mean_c) / sqrt(running_var_c + eps),    y = gamma_c xhat + beta_c
    dx   = dy gamma_c / sqrt(running_var_c + eps),   dgamma_c = sum dy xhat,   dbeta_c = sum dy

Running statistics (PyTorch's momentum convention; the variance estimate is unbiased):
    running_mean <- (1 - m) running_mean + m mean_c
    running_var  <- (1 - m) running_var  + m var_c M / (M - 1)

A BatchNorm inside a larger composition (the attention branches of ODConv, DCD and FDY) is a
*stage*: ``batchnorm_stage(params, eps, buffers)`` gives the mode's ``normalise(z, prefix)``
-> (out, (backward, cache)), reading "<prefix>_weight", "<prefix>_bias" and, in evaluation
mode, "<prefix>_running_mean" / "<prefix>_running_var"; ``batch_stats`` reads a training
stage's statistics for the caller's running-statistics update.
"""
import numpy as np

from .._validation import (check_float_array, check_named_arrays, check_real, check_same_dtype,
                           check_shape, check_upstream, stage_cache)

_AXES = (0, 2, 3)


def _per_channel(v):
    """(C,) -> (1, C, 1, 1), to broadcast against NCHW."""
    return v[None, :, None, None]


def check_batchnorm_args(x, weight, bias, eps, **stats):
    """x (N, C, H, W); weight, bias and any running statistics (C,), one dtype, finite;
    eps a finite real >= 0; a running variance must be >= 0."""
    check_float_array(x, "x", ndim=4, host=True)
    channels = x.shape[1]
    for name, value in dict(weight=weight, bias=bias, **stats).items():
        check_float_array(value, name, ndim=1, host=True)
        check_shape(value, name, (channels,))
    check_same_dtype(x=x, weight=weight, bias=bias, **stats)
    check_real(eps, "eps", low=0)
    if stats.get("running_var") is not None:
        check_variance(stats["running_var"], "running_var")


def check_variance(var, name):
    """A running variance must be >= 0: ValueError naming the first negative entry."""
    if (var < 0).any():
        index = int(np.argmax(var < 0))
        raise ValueError(f"{name} must be >= 0 (a variance); received {float(var[index])} at "
                         f"index {index}")


def check_running_stats(buffers, shapes, dtype):
    """Running statistics by name: ``shapes`` {name: shape}, each in ``buffers``, finite, of
    ``dtype``; every "*running_var" >= 0. Names what is missing or wrong."""
    missing = [name for name in shapes if name not in buffers]
    if missing:
        raise ValueError(f"buffers is missing the running statistic(s) {missing}; it has "
                         f"{sorted(buffers)}")
    check_named_arrays(buffers, shapes, dtype)
    for name in shapes:
        if name.endswith("running_var"):
            check_variance(buffers[name], name)


def check_train_batch(x):
    """Training mode estimates a variance: it needs N H W > 1 values per channel."""
    if x.shape[0] * x.shape[2] * x.shape[3] < 2:
        raise ValueError(f"batch normalisation in training mode needs more than one value per "
                         f"channel (N H W > 1) to estimate a variance; received x shape "
                         f"{tuple(x.shape)}")


def batchnorm2d_train_forward(x, weight, bias, eps=1e-5):
    """y = weight xhat + bias with batch statistics -> (y, cache).

    x (N, C, H, W); weight (gamma), bias (beta): (C,). ``cache["mean"]`` and ``cache["var"]``
    are the batch mean and the biased batch variance (C,), ``cache["count"]`` is M = N H W.
    """
    check_batchnorm_args(x, weight, bias, eps)
    check_train_batch(x)
    y, cache = _batchnorm2d_train_forward(x, weight, bias, eps)
    return y, stage_cache("batchnorm2d_train", cache, y)


def batchnorm2d_train_backward(dy, cache):
    """(dx, dweight, dbias) of ``batchnorm2d_train_forward`` (compact formula above)."""
    return _batchnorm2d_train_backward(check_upstream(cache, "batchnorm2d_train", dy=dy), cache)


def batchnorm2d_eval_forward(x, weight, bias, running_mean, running_var, eps=1e-5):
    """y = weight (x - running_mean) / sqrt(running_var + eps) + bias -> (y, cache)."""
    check_batchnorm_args(x, weight, bias, eps, running_mean=running_mean,
                         running_var=running_var)
    y, cache = _batchnorm2d_eval_forward(x, weight, bias, running_mean, running_var, eps)
    return y, stage_cache("batchnorm2d_eval", cache, y)


def batchnorm2d_eval_backward(dy, cache):
    """(dx, dweight, dbias) of ``batchnorm2d_eval_forward`` (the affine map's adjoint)."""
    return _batchnorm2d_eval_backward(check_upstream(cache, "batchnorm2d_eval", dy=dy), cache)


def _batchnorm2d_train_forward(x, weight, bias, eps):
    count = x.shape[0] * x.shape[2] * x.shape[3]
    mean = x.mean(axis=_AXES)
    centred = x - _per_channel(mean)
    var = np.mean(centred * centred, axis=_AXES)
    inv_std = 1 / np.sqrt(var + x.dtype.type(eps))
    xhat = centred * _per_channel(inv_std)
    y = _per_channel(weight) * xhat + _per_channel(bias)
    return y, {"xhat": xhat, "inv_std": inv_std, "weight": weight, "mean": mean, "var": var,
               "count": count}


def _batchnorm2d_train_backward(dy, cache):
    xhat, inv_std, weight, count = cache["xhat"], cache["inv_std"], cache["weight"], cache["count"]
    dbias = dy.sum(axis=_AXES)
    dweight = np.sum(dy * xhat, axis=_AXES)
    dx = _per_channel(weight * inv_std / count) * (
        count * dy - _per_channel(dbias) - xhat * _per_channel(dweight))
    return dx, dweight, dbias


def _batchnorm2d_eval_forward(x, weight, bias, running_mean, running_var, eps):
    # y = scale_c x + shift_c, scale_c = gamma_c / sqrt(running_var_c + eps),
    # shift_c = beta_c - running_mean_c scale_c: two passes over x (PyTorch's CPU inference
    # folds the statistics the same way); xhat is formed only if a backward asks for dgamma
    inv_std = 1 / np.sqrt(running_var + x.dtype.type(eps))
    scale = weight * inv_std
    y = x * _per_channel(scale)
    y += _per_channel(bias - running_mean * scale)
    return y, {"x": x, "running_mean": running_mean.copy(), "inv_std": inv_std, "scale": scale}


def _batchnorm2d_eval_backward(dy, cache):
    xhat = (cache["x"] - _per_channel(cache["running_mean"])) * _per_channel(cache["inv_std"])
    return dy * _per_channel(cache["scale"]), np.sum(dy * xhat, axis=_AXES), dy.sum(axis=_AXES)


def batchnorm_stage(params, eps, buffers=None):
    """The BatchNorm stage of a composition: ``normalise(z, prefix="bn")`` -> (out, stage),
    stage = (its backward, its cache), with gamma params["<prefix>_weight"] and beta
    params["<prefix>_bias"] (C,) over z (N, C, H, W); batch statistics when ``buffers`` is None
    (training), else the running statistics buffers["<prefix>_running_mean"] and
    buffers["<prefix>_running_var"] (evaluation). Trusts its inputs (checked by the caller)."""
    def normalise(z, prefix="bn"):
        weight, bias = params[f"{prefix}_weight"], params[f"{prefix}_bias"]
        if buffers is None:
            out, cache = _batchnorm2d_train_forward(z, weight, bias, eps)
            return out, (_batchnorm2d_train_backward, cache)
        out, cache = _batchnorm2d_eval_forward(z, weight, bias, buffers[f"{prefix}_running_mean"],
                                               buffers[f"{prefix}_running_var"], eps)
        return out, (_batchnorm2d_eval_backward, cache)
    return normalise


def batchnorm_stage_backward(dout, stage):
    """(dz, dweight, dbias) of a ``batchnorm_stage`` call, by its mode's backward."""
    backward, cache = stage
    return backward(dout, cache)


def batch_stats(stage):
    """(batch mean, biased batch variance, count M) of a training-mode stage; None in eval."""
    cache = stage[1]
    return (cache["mean"], cache["var"], cache["count"]) if "mean" in cache else None


def running_stats_update(running_mean, running_var, batch_mean, batch_var, count, momentum):
    """(new_mean, new_var): the momentum update above; batch_var is biased, count = M > 1."""
    check_real(momentum, "momentum", low=0, high=1)
    m = running_mean.dtype.type(momentum)
    unbiased = batch_var * running_var.dtype.type(count / (count - 1))
    return (1 - m) * running_mean + m * batch_mean, (1 - m) * running_var + m * unbiased
