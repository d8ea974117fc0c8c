"""Training in step: our DynamicConv2d (attention_bias=False) and a kaijieshi7-layout torch
layer, both from the same weights, 5 SGD steps with momentum in float64, tau annealed by 3 per
step as kaijieshi7 anneals it per epoch: every parameter, output and loss agree at each step."""
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the interop tests compare against PyTorch")

from dynconv_np.interop import export_layer, layer_from_state  # noqa: E402
from dynconv_np.train.optim import SGD  # noqa: E402

from .torch_layers import KaijieLayout  # noqa: E402


def test_five_sgd_steps_match_torch_step_for_step():
    torch.manual_seed(0)
    theirs = KaijieLayout(6, 5, 3, padding=1, stride=2, K=4, temperature=34).double()
    ours = layer_from_state(theirs, "kaijieshi7", stride=2, padding=1, temperature=34.0,
                            backend="numpy")
    assert "fc1_bias" not in ours.params and ours.hidden == int(6 * 0.25) + 1
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 6, 9, 9))
    target = rng.standard_normal((4, 5, 5, 5))
    opt_ours = SGD(ours, lr=0.05, momentum=0.9)
    opt_theirs = torch.optim.SGD(theirs.parameters(), lr=0.05, momentum=0.9)
    for step in range(5):
        tau = 34.0 - 3 * step
        ours.temperature = tau
        theirs.attention.temperature = tau
        y = ours(x)
        loss = 0.5 * np.sum((y - target) ** 2) / len(x)
        ours.zero_grad()
        ours.backward((y - target) / len(x))
        opt_ours.step()
        opt_theirs.zero_grad()
        yt = theirs(torch.tensor(x))
        loss_t = 0.5 * ((yt - torch.tensor(target)) ** 2).sum() / len(x)
        loss_t.backward()
        opt_theirs.step()
        np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-12, atol=1e-13)
        assert loss == pytest.approx(loss_t.item(), rel=1e-12)
        for key, value in export_layer(ours, "kaijieshi7").items():
            np.testing.assert_allclose(value, theirs.state_dict()[key].numpy(), rtol=1e-11,
                                       atol=1e-13, err_msg=f"step {step}: {key}")
    # the run moved every parameter (the test would pass vacuously otherwise)
    assert all(np.abs(g).max() > 0 for g in ours.grads.values())
