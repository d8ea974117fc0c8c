"""ResNet-18 and ResNet-10: exact hand-derived counts, published sizes, and the paper's claim that
a larger network pays a smaller share for dynamic convolution.

ResNet-18 MAdds at 224 x 224, by hand (C_out H_out W_out C_in kh kw per convolution):
    stem 7x7, 3 -> 64, 112 x 112:                64 * 112^2 * 3 * 49    = 118,013,952
    every 3x3 conv with C_in = C_out (c, s x s):  s^2 c^2 9 = 56^2 64^2 9 = 115,605,504 (all stages)
    first conv of stages 2-4 (C_in = c / 2):      half of that          =  57,802,752
    1x1 shortcuts of stages 2-4:                  28^2 128 64           =   6,422,528 (each)
    stage 1: 4 x 115,605,504;  stages 2-4: 57,802,752 + 3 x 115,605,504 + 6,422,528 each
    global pool 512 * 7 * 7 = 25,088;  classifier 512 * 1000 = 512,000
    total 1,814,098,432 (the ResNet paper: 1.8 G).  ResNet-10 drops one 2-conv block per stage:
    1,814,098,432 - 8 x 115,605,504 = 889,254,400 (the DY paper: 0.89 G).
Params: ResNet-18 11,689,512 exactly as torchvision's ``resnet18``. ResNet-10 by hand:
    stem 9,408 + BN 128; stage 1: 2 x 36,864 + 2 x 128; stage 2: 73,728 + 147,456 + 8,192 +
    3 x 256; stage 3: 294,912 + 589,824 + 32,768 + 3 x 512; stage 4: 1,179,648 + 2,359,296 +
    131,072 + 3 x 1,024; classifier 513,000; total 5,418,792.
"""
import pytest

from dynconv_np import nn
from dynconv_np.models import profile, resnet10, resnet18
from dynconv_np.models.costs import static_and_dynamic


@pytest.mark.parametrize("build, params, madds", [(resnet18, 11_689_512, 1_814_098_432),
                                                  (resnet10, 5_418_792, 889_254_400)])
def test_counts_match_the_hand_derivation(build, params, madds):
    result = profile(build(backend="numpy", rng=0), (3, 224, 224))
    assert (result.params, result.madds) == (params, madds)
    assert result.output_shape == (1, 1000)


def test_stage_structure():
    model = resnet10(num_classes=10, backend="numpy", rng=0)
    residuals = [m for m in model.modules() if isinstance(m, nn.Residual)]
    assert len(residuals) == 4
    assert [r.shortcut is None for r in residuals] == [True, False, False, False]
    assert isinstance(model.layers[0].layers[-1], nn.MaxPool2d)


def test_larger_networks_pay_a_smaller_share_than_mobilenet_v3_small():
    """PAPER.md: "about 4 % more multiply-adds [for MobileNetV3-Small]; for larger networks the
    share is smaller". Checked with and without the attention's pooling."""
    def shares(name):
        static, dynamic = static_and_dynamic(name)
        extra = dynamic.attention + dynamic.aggregation
        return extra / static.madds, (extra - dynamic.attention_pool) / static.madds

    small = shares("mobilenet_v3_small")
    for name in ("mobilenet_v2_1.0", "mobilenet_v3_large", "resnet18", "resnet10"):
        larger = shares(name)
        assert larger[0] < small[0] and larger[1] < small[1], (name, larger, small)
