"""The network benchmark (dynconv_np.bench.networks): the PyTorch twin equals our network in
float64 over a training step, the translator refuses what it cannot translate, the memory probe
measures something, and a --tiny --networks run through main() prints its tables."""
import numpy as np
import pytest

from dynconv_np import nn
from dynconv_np.bench import main, networks, parse_args, timing, torch_twin

torch = pytest.importorskip(
    "torch", reason="the network benchmark compares against PyTorch (pip install "
                    "'dynconv_np[bench]'); without it there is no twin to test")


@pytest.mark.parametrize("spec", networks.TINY_SUITE, ids=lambda spec: spec.name)
def test_the_torch_twin_equals_our_network_over_a_training_step(spec):
    """float64, one SGD step on 8 samples: logits, loss, every gradient, the parameters and
    running statistics after the update, and eval-mode logits agree to 1e-10 (relative)."""
    errors = networks.check_twin(spec)
    assert set(errors) == {"logits", "loss", "gradients", "parameters after the step",
                           "running statistics", "eval logits"}
    assert max(errors.values()) <= networks.CHECK_TOLERANCE, errors


def test_the_check_sees_a_wrong_twin(monkeypatch):
    """A twin with one parameter off by 1e-6 (relative) fails the check."""
    translate = torch_twin._translate

    def perturbed(module, prefix, twin):
        out = translate(module, prefix, twin)
        if prefix == "" and twin.params:
            with torch.no_grad():
                twin.params[-1][1].mul_(1 + 1e-6)
        return out

    monkeypatch.setattr(torch_twin, "_translate", perturbed)
    errors = networks.check_twin(networks.TINY_SUITE[0])
    assert errors["logits"] > networks.CHECK_TOLERANCE


def test_the_twin_copies_parameters_names_and_mode():
    model = networks.TINY_SUITE[2].build("numpy")
    twin = networks.torch_twin(model.eval())
    ours = {name: value for name, value, _ in model.named_parameters()}
    assert [name for name, _ in twin.params] == list(ours)   # the same order, every one
    for name, tensor in twin.params:
        np.testing.assert_array_equal(tensor.detach().numpy(), ours[name])
        assert tensor.dtype == torch.float32
    assert not twin.module.training
    assert any(isinstance(m, torch.nn.Dropout) for m in twin.module.modules())


def test_the_translator_names_a_module_it_cannot_translate():
    class Odd(nn.Module):
        pass

    with pytest.raises(TypeError, match=r"no PyTorch twin for Odd \(at '1\.'\)"):
        networks.torch_twin(nn.Sequential(nn.ReLU(), Odd()))


def test_dy_resnet10_width_scales_every_stage():
    model = networks.dy_resnet10(0.25, num_classes=10, backend="numpy", rng=0)
    convs = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.DynamicConv2d))]
    assert isinstance(convs[0], nn.Conv2d) and convs[0].out_channels == 16   # static stem
    assert all(isinstance(m, nn.DynamicConv2d) for m in convs[1:])
    assert sorted({m.out_channels for m in convs}) == [16, 32, 64, 128]
    y = model.forward(np.zeros((2, 3, 32, 32), np.float32))
    assert y.shape == (2, 10)


def test_training_step_memory_probes():
    spec = networks.TINY_SUITE[1]
    assert networks.traced_step_peak(spec, "numpy") > 0
    peak, method = networks.rss_step_peak_here(spec, "numpy")
    assert peak >= 0 and method


def test_networks_flag_is_cpu_only(capsys):
    assert parse_args(["--networks"]).networks
    assert not parse_args([]).networks
    with pytest.raises(SystemExit):
        parse_args(["--networks", "--section", "gpu"])
    assert "--networks runs on the CPU only" in capsys.readouterr().err


def test_tiny_networks_run_prints_its_tables(monkeypatch, capsys):
    monkeypatch.setattr(timing, "PHASE_PAUSE_S", 0.0)
    assert main(["--networks", "--tiny", "--repeats", "2", "--rounds", "1"]) == 0
    out = capsys.readouterr().out
    assert "Network section:" in out and "tiny suite" in out
    assert "PyTorch twin check" in out and "FAILED" not in out
    assert ("|        numba        |        numpy        |   torch (oneDNN)    |  "
            "torch (no oneDNN)") in out
    assert "numba / torch median" in out and "numba / numpy median" in out
    for spec in networks.TINY_SUITE:
        assert f"{spec.name:20} infer |" in out
        assert (f"{spec.name:20} train |" in out) == spec.train
    assert "Training step peak memory" in out and "numba traced" in out
    assert "RSS not with --tiny" in out
