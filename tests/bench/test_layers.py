"""The layer suite (dynconv_np.bench.layers): shapes, and our layer against its PyTorch twin."""
import numpy as np
import pytest

from dynconv_np.bench import layers


def test_spec_geometry_and_flops():
    l4 = layers.find_spec(layers.SUITE, "L4")
    assert l4.out_size == 16
    assert l4.kernel_elements == 16 * 128 * 64 * 9
    assert l4.conv_flops == 2 * 16 * 128 * 64 * 9 * 16 * 16
    depthwise = layers.find_spec(layers.SUITE, "L3")
    assert depthwise.kernel_elements == 16 * 128 * 1 * 9
    assert layers.find_spec(layers.SUITE, "L9") is None


def test_tiny_suite_has_the_suite_layers():
    assert [s.name for s in layers.TINY_SUITE] == [s.name for s in layers.SUITE]
    for tiny, full in zip(layers.TINY_SUITE, layers.SUITE):
        assert (tiny.kernel, tiny.stride, tiny.padding) == (full.kernel, full.stride, full.padding)
        assert (tiny.groups == 1) == (full.groups == 1)


def test_inputs_and_layer_match_the_spec():
    spec = layers.find_spec(layers.TINY_SUITE, "L4")
    x, dy = layers.make_inputs(spec)
    assert x.shape == (2, 8, 8, 8) and dy.shape == (2, 16, 4, 4)
    assert x.dtype == dy.dtype == np.float32
    layer = layers.make_layer(spec, "numpy")
    assert layer.forward(x).shape == dy.shape
    assert layer.params["weight"].shape == (layers.NUM_KERNELS, 16, 8, 3, 3)
    # the same parameters however often (and on whichever backend) the layer is built
    again = layers.make_layer(spec, "numpy")
    assert all(np.array_equal(again.params[k], v) for k, v in layer.params.items())


@pytest.mark.parametrize("spec", layers.TINY_SUITE, ids=lambda spec: spec.name)
def test_torch_twin_computes_our_layer(spec):
    torch = pytest.importorskip("torch", reason="the PyTorch twin needs torch "
                                "(pip install 'dynconv_np[bench]')")
    layer = layers.make_layer(spec, "numpy")   # the reference backend: no JIT, the judge
    x, dy = layers.make_inputs(spec)
    y = layer.forward(x)
    dx = layer.backward(dy)

    forward, params = layers.torch_twin(spec, layer.params)
    x_t = torch.tensor(x, requires_grad=True)
    y_t = forward(x_t)
    y_t.backward(torch.tensor(dy))
    np.testing.assert_allclose(y_t.detach().numpy(), y, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(x_t.grad.numpy(), dx, rtol=1e-4, atol=1e-5)
    assert set(params) == set(layer.grads)
    for name, tensor in params.items():
        np.testing.assert_allclose(tensor.grad.numpy(), layer.grads[name], rtol=1e-3,
                                   atol=1e-4, err_msg=name)

