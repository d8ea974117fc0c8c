"""MobileNetV3-Small and -Large against their published size and cost; DY-MobileNetV3-Small's
extra cost against the paper's "about 4 %".

Params: torchvision's ``mobilenet_v3_small`` / ``_large`` (the same layers) have exactly
2,542,856 and 5,483,032 parameters. MAdds: the MobileNetV3 paper (Table 3) gives 56M (Small) and
219M (Large); ours: 56.8M (+1.5 %) and 217.2M (-0.8 %). Tolerance 2 %: the figures are rounded
(56M to +-0.9 %) and the paper does not say how it counts the SE blocks (Small: 0.74M, 1.3 %) and
the classifier (1.61M, 2.8 %), so the convention alone moves a count by a few percent. The exact
parameter counts pin the architecture; this check catches gross errors in the shape propagation
(Small's cheapest block is 1.3M, 2.3 %; a wrong stride changes a stage's cost fourfold).
"""
import pytest

from dynconv_np import nn
from dynconv_np.models import mobilenet_v3_large, mobilenet_v3_small, profile
from dynconv_np.models.costs import static_and_dynamic


@pytest.mark.parametrize("build, params, published_madds", [
    (mobilenet_v3_small, 2_542_856, 56e6), (mobilenet_v3_large, 5_483_032, 219e6)])
def test_params_exact_and_madds_near_published(build, params, published_madds):
    result = profile(build(backend="numpy", rng=0), (3, 224, 224))
    assert result.params == params
    assert abs(result.madds - published_madds) <= 0.02 * published_madds, \
        f"{result.madds / 1e6:.1f}M"


@pytest.mark.parametrize("build, blocks, se_blocks", [(mobilenet_v3_small, 11, 9),
                                                      (mobilenet_v3_large, 15, 8)])
def test_block_and_squeeze_excite_counts(build, blocks, se_blocks):
    model = build(num_classes=10, backend="numpy", rng=0)
    assert len(model.layers) == 1 + blocks + 1
    assert sum(isinstance(m, nn.SqueezeExcite) for m in model.modules()) == se_blocks
    assert sum(isinstance(m, nn.HardSwish) for m in model.modules()) > 0


def test_dy_small_extra_madds_about_4_percent_as_the_paper():
    """PAPER.md: DY-MobileNetV3-Small costs "about 4 %" more MAdds (the paper's table: 66.0M ->
    68.5M, 3.8 %). Our attention FCs and aggregation add 4.0 %, inside 4 +- 0.5 % (the precision
    of "about 4 %"). The paper does not say whether it counts the attention's global pooling
    (additions only); with it our extra is 6.5 % (pinned here as a regression value)."""
    static, dynamic = static_and_dynamic("mobilenet_v3_small")
    without_pool = (dynamic.attention_fc + dynamic.aggregation) / static.madds
    assert 0.035 <= without_pool <= 0.045, without_pool
    assert dynamic.madds == static.madds + dynamic.attention + dynamic.aggregation
    assert 0.06 <= (dynamic.madds - static.madds) / static.madds <= 0.07
