"""``digits-mixed``: the embedded 8 x 8 digits, each shown clean and in one drawn style.

A task *constructed* from real data so that a global property of the image changes which
filter is right, the situation in which input-dependent kernels can help: a stroke detector for
dark-on-light digits is the wrong one for light-on-dark digits, and one tuned to thin, sharp
strokes is not the best for bold, blurred or noisy ones. A static network must cover every
style with the same kernels; a dynamic one can mix its K kernels differently per image, and its
attention branch sees exactly the global statistics (channel means) that tell the styles apart.

Construction (``load_mixed_digits``):

* start from the fixed train/test split of ``load_digits`` (1347 / 450 images), pixels in
  [0, 1] (the integer pixels 0..16 divided by 16);
* every image appears twice: once clean and once in one style drawn uniformly at random (one
  fixed seed) from

      inverted   1 - x                                   (light strokes on a dark ground)
      bold       2 x 2 grey dilation: max of x over the window [i, i+1] x [j, j+1]
                 (edge pixels repeated past the border, as ``scipy.ndimage.grey_dilation``)
      blurred    Gaussian blur, sigma 0.8 (separable, radius 3, symmetric reflection at the
                 border, as ``scipy.ndimage.gaussian_filter``)
      noisy      x + 0.35 z, z standard normal, not clipped

  so the split holds 2694 training and 900 test images, labelled by digit as before;
* standardised with the *training* images' mean and standard deviation (one channel), as every
  dataset in ``train.data``.

The returned ``MixedDigits`` is a ``train.data.Dataset`` with two more arrays,
``style_train`` and ``style_test`` (index into ``STYLES``: 0 clean, 1 inverted, 2 bold,
3 blurred, 4 noisy), so a reader can ask whether the learned attention tells the styles apart.

What the task does not claim: it is not the paper's setting (ImageNet, networks of hundreds of
millions of MAdds), and on the plain digits (``load_digits``) dynamic convolution does not help
a network of this size.
"""
from dataclasses import dataclass

import numpy as np

from .data import Dataset, load_digits
from .._validation import _is_int, check_float_dtype

STYLES = ("clean", "inverted", "bold", "blurred", "noisy")
BLUR_SIGMA = 0.8
NOISE_SIGMA = 0.35


@dataclass
class MixedDigits(Dataset):
    """A ``Dataset`` whose images also carry a style label (index into ``STYLES``)."""
    style_train: np.ndarray = None
    style_test: np.ndarray = None


def load_mixed_digits(seed=0, dtype=np.float32):
    """The ``digits-mixed`` dataset of the module docstring -> ``MixedDigits``.

    ``seed`` draws the style of every styled copy and the noise (train first, then test); the
    digits' own train/test split is ``load_digits``'s fixed one. Same seed, same arrays.
    """
    if not _is_int(seed) or seed < 0:
        raise TypeError(f"seed must be a non-negative int; received {seed!r}")
    dtype = check_float_dtype(dtype)
    digits = load_digits(dtype=np.float64)
    train, test = _unit_pixels(digits.x_train, digits.x_test)
    rng = np.random.default_rng(seed)
    splits = []
    for images, labels in ((train, digits.y_train), (test, digits.y_test)):
        styles = rng.integers(1, len(STYLES), size=len(images))
        styled = np.empty_like(images)
        for index, name in enumerate(STYLES[1:], start=1):
            chosen = styles == index
            styled[chosen] = apply_style(images[chosen], name, rng)
        splits.append((np.concatenate([images, styled]), np.concatenate([labels, labels]),
                       np.concatenate([np.zeros(len(images), np.int64), styles])))
    (x_train, y_train, s_train), (x_test, y_test, s_test) = splits
    mean, std = x_train.mean(), max(x_train.std(), 1e-12)
    return MixedDigits("digits-mixed", ((x_train - mean) / std).astype(dtype), y_train,
                       ((x_test - mean) / std).astype(dtype), y_test, digits.classes,
                       style_train=s_train, style_test=s_test)


def apply_style(images, style, rng=None):
    """``images`` (N, 1, H, W) in [0, 1] drawn in ``style`` (a name from ``STYLES``); "noisy"
    draws its noise from ``rng`` (a Generator or a seed)."""
    if style not in STYLES:
        raise ValueError(f"style must be one of {STYLES}; received {style!r}")
    images = np.asarray(images, dtype=np.float64)
    if style == "clean":
        return images.copy()
    if style == "inverted":
        return 1.0 - images
    if style == "bold":
        return grey_dilation_2x2(images)
    if style == "blurred":
        return gaussian_blur(images, BLUR_SIGMA)
    rng = np.random.default_rng(rng)
    return images + NOISE_SIGMA * rng.standard_normal(images.shape)


def grey_dilation_2x2(images):
    """out[..., i, j] = max of images[..., i:i+2, j:j+2], the last row and column repeated."""
    padded = np.pad(images, [(0, 0)] * (images.ndim - 2) + [(0, 1), (0, 1)], mode="edge")
    return np.maximum.reduce([padded[..., a:a + images.shape[-2], b:b + images.shape[-1]]
                              for a in (0, 1) for b in (0, 1)])


def gaussian_blur(images, sigma, truncate=4.0):
    """Separable Gaussian blur over the last two axes (radius round(truncate sigma), borders
    reflected symmetrically: d c b a | a b c d | d c b a)."""
    radius = int(truncate * sigma + 0.5)
    offsets = np.arange(-radius, radius + 1)
    weights = np.exp(-0.5 * (offsets / sigma) ** 2)
    weights /= weights.sum()
    out = images
    for axis in (-2, -1):
        pad = [(0, 0)] * out.ndim
        pad[axis] = (radius, radius)
        padded = np.pad(out, pad, mode="symmetric")
        size = out.shape[axis]
        out = sum(w * np.take(padded, np.arange(i, i + size), axis=axis)
                  for i, w in enumerate(weights))
    return out


def _unit_pixels(x_train, x_test):
    """Undo ``load_digits``'s standardisation (one affine map for both splits): the training
    images hold both pixel values 0 and 16, so their minimum and maximum fix the map. The
    recovered pixels are checked to be k / 16."""
    low, high = x_train.min(), x_train.max()
    unit = [(x - low) / (high - low) for x in (x_train, x_test)]
    for x in unit:
        if np.abs(x * 16 - np.round(x * 16)).max() > 1e-6:
            raise ValueError("the embedded digits are not on the 0..16 pixel grid expected")
    return [np.round(x * 16) / 16 for x in unit]
