"""Phase planes, tap offsets and grids (``numba_fast/planes.py``): the geometry every
convolution kernel relies on, checked against direct indexing of the zero-padded image."""
import numpy as np
from hypothesis import given, strategies as st

from dynconv_np.backends.geometry import conv_output_size
from dynconv_np.backends.numba_fast import planes

PAIRS = {"stride": st.tuples(st.integers(1, 3), st.integers(1, 3)),
         "padding": st.tuples(st.integers(0, 2), st.integers(0, 2)),
         "dilation": st.tuples(st.integers(1, 2), st.integers(1, 2)),
         "kernel": st.tuples(st.integers(1, 3), st.integers(1, 3))}


@st.composite
def geometries(draw):
    """(x shape, kernel, stride, padding, dilation) with at least one output position."""
    g = {name: draw(strategy) for name, strategy in PAIRS.items()}
    sides = [draw(st.integers(max(1, d * (k - 1) + 1 - 2 * p), 12))
             for k, p, d in zip(g["kernel"], g["padding"], g["dilation"])]
    return (draw(st.integers(1, 2)), draw(st.integers(1, 3)), *sides), g


@given(geometry=geometries(), seed=st.integers(0, 2**32 - 1))
def test_every_tap_run_reads_the_padded_image_within_its_own_phase_plane(geometry, seed):
    """planes[n, c, taps[i kw + j] + h Wq + w] = x_padded[n, c, h s0 + i d0, w s1 + j d1] for
    every output position (h, w), and each tap's run over the whole grid (w < Wq) stays inside
    the phase plane it starts in; the planes are exactly the padded image's samples."""
    shape, g = geometry
    (kh, kw), stride, padding, dilation = g["kernel"], g["stride"], g["padding"], g["dilation"]
    x = np.random.default_rng(seed).standard_normal(shape)
    flat, taps, pitch = planes.padded_batch(x, kh, kw, stride, padding, dilation)
    phases, length, same_pitch = planes.plane_geometry(x.shape, kw, stride, padding, dilation)
    assert same_pitch == pitch and flat.shape == shape[:2] + (phases * length,)
    out_h = conv_output_size(shape[2], kh, stride[0], padding[0], dilation[0])
    out_w = conv_output_size(shape[3], kw, stride[1], padding[1], dilation[1])
    x_pad = np.pad(x, ((0, 0), (0, 0), (padding[0],) * 2, (padding[1],) * 2))
    h, w = np.meshgrid(np.arange(out_h), np.arange(out_w), indexing="ij")
    for tap, offset in enumerate(taps):
        i, j = divmod(tap, kw)
        np.testing.assert_array_equal(
            flat[:, :, int(offset) + h * pitch + w],
            x_pad[:, :, h * stride[0] + i * dilation[0], w * stride[1] + j * dilation[1]])
        assert offset % length + out_h * pitch <= length, f"tap {tap} leaves its plane"
    np.testing.assert_array_equal(np.sort(flat[flat != 0]), np.sort(x[x != 0]))


@given(geometry=geometries(), seed=st.integers(0, 2**32 - 1))
def test_pad_transfer_back_crops_the_planes_into_the_image(geometry, seed):
    """The adjoint direction reads exactly the interior: planes -> image recovers x, and
    <P x, y> = <x, P^T y> for arbitrary planes y."""
    shape, g = geometry
    stride, padding = g["stride"], g["padding"]
    rng = np.random.default_rng(seed)
    image = rng.standard_normal(shape[2:])
    phases, length, pitch = planes.plane_geometry(shape, g["kernel"][1], stride, padding,
                                                  g["dilation"])
    padded = np.zeros((phases, length))
    planes.pad_transfer(image, padded, padding, pitch, stride, True)
    back = np.full_like(image, np.nan)
    planes.pad_transfer(back, padded, padding, pitch, stride, False)
    np.testing.assert_array_equal(back, image)
    other = rng.standard_normal((phases, length))
    cropped = np.empty_like(image)
    planes.pad_transfer(cropped, other, padding, pitch, stride, False)
    np.testing.assert_allclose((padded * other).sum(), (image * cropped).sum(), rtol=1e-12,
                               atol=1e-12)


@given(height=st.integers(1, 6), width=st.integers(1, 6), extra=st.integers(0, 4))
def test_image_onto_grid_puts_rows_at_the_pitch_with_zeros_beyond(height, width, extra):
    image = np.arange(1.0, height * width + 1).reshape(height, width)
    pitch = width + extra
    grid = np.full(height * pitch, np.nan)
    planes.image_onto_grid(image, grid, pitch)
    expected = np.zeros((height, pitch))
    expected[:, :width] = image
    np.testing.assert_array_equal(grid.reshape(height, pitch), expected)
