"""MobileNetV2 against its published size and cost, and its channel rounding.

Params: torchvision's ``mobilenet_v2`` (the same layers) has exactly 3,504,872 parameters.
MAdds: the MobileNetV2 paper / TF-slim table at 224 x 224: 300M (x1.0), 209M (x0.75), 97M (x0.5),
59M (x0.35); ours: 300.8M, 209.1M, 97.2M, 59.3M. Tolerance 1 %: those figures are rounded to 2-3
significant digits (59M to +-0.9 %), and our count adds the global pooling (62.7K, at most 0.1 %)
that theirs may leave out. An architectural slip moves the count further: every inverted-residual
block costs at least 2.5 % of the total (x1.0: 7.6M; x0.35: 1.6M).
"""
import pytest

from dynconv_np import nn
from dynconv_np.models import mobilenet_v2, profile


@pytest.mark.parametrize("width, published", [(1.0, 300e6), (0.75, 209e6), (0.5, 97e6),
                                              (0.35, 59e6)])
def test_madds_match_the_published_table(width, published):
    madds = profile(mobilenet_v2(width, backend="numpy", rng=0), (3, 224, 224)).madds
    assert abs(madds - published) <= 0.01 * published, f"{madds / 1e6:.1f}M"


def test_params_match_torchvision_exactly():
    assert profile(mobilenet_v2(1.0, backend="numpy", rng=0), (3, 224, 224)).params == 3_504_872


def test_width_rounds_channels_to_multiples_of_8_but_keeps_1280_last():
    model = mobilenet_v2(0.35, num_classes=10, backend="numpy", rng=0)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert convs[0].out_channels == 16          # make_divisible(32 * 0.35 = 11.2) = 16
    assert convs[2].out_channels == 8           # block 1: make_divisible(16 * 0.35 = 5.6) = 8
    assert convs[-1].out_channels == 1280       # 1280 * max(1, 0.35)
    assert all(c.out_channels % 8 == 0 for c in convs)
    assert len(model.layers) == 1 + 17 + 1      # stem, 17 inverted residuals, head
    assert sum(isinstance(block, nn.Residual) for block in model.layers) == 10


@pytest.mark.parametrize("width", [0, -1.0, float("nan"), True, "1.0"])
def test_bad_width_is_rejected(width):
    with pytest.raises(ValueError, match="width"):
        mobilenet_v2(width)
