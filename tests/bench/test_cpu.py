"""The CPU section (dynconv_np.bench.cpu): what the attention share times, the memory
figure, and the tables built from timings (fake timings here: speed is never asserted)."""

from dynconv_np.backends import get_backend
from dynconv_np.bench import cpu, layers, timing
from dynconv_np.functional import dynamic_conv

TINY_L4 = layers.find_spec(layers.TINY_SUITE, "L4")


def test_attention_share_times_the_layers_own_stage_alternating_with_forwards(monkeypatch):
    """The stage timed is one call of _dynamic_kernels with the layer's params, temperature
    and backend module; stage and whole forward take turns (one untimed call of each)."""
    log, built, in_forward = [], [], [False]
    real_kernels = dynamic_conv._dynamic_kernels
    real_make_layer = layers.make_layer

    def recording_kernels(x, params, tau, module):
        if not in_forward[0]:   # the forward calls it too: only the bench's own calls count
            log.append(("stage", x.shape, params, tau, module))
        return real_kernels(x, params, tau, module)

    def make_layer(spec, backend):
        layer = real_make_layer(spec, backend)
        forward = layer.forward

        def logged_forward(x):
            log.append("forward")
            in_forward[0] = True
            try:
                return forward(x)
            finally:
                in_forward[0] = False
        layer.forward = logged_forward
        built.append(layer)
        return layer

    monkeypatch.setattr(dynamic_conv, "_dynamic_kernels", recording_kernels)
    monkeypatch.setattr(layers, "make_layer", make_layer)
    stage_s, forward_s = cpu.attention_share(TINY_L4, "numpy", repeats=3)

    (layer,) = built
    x, _ = layers.make_inputs(TINY_L4)
    stage_call = ("stage", x.shape, layer.params, layer.temperature, get_backend("numpy"))
    assert log == [stage_call, "forward"] * 4
    assert log[0][2] is layer.params
    assert 0 < stage_s and 0 < forward_s


def test_peak_memory_counts_against_the_essential_arrays():
    peak, essential = cpu.peak_memory(TINY_L4, "numpy")
    x, dy = layers.make_inputs(TINY_L4)
    assert essential == x.nbytes + dy.nbytes + 2 * 4 * TINY_L4.kernel_elements
    assert peak > 0


def test_libraries_are_the_backends_then_torch():
    assert list(cpu.libraries(("numba", "numpy"), None)) == ["numba", "numpy"]
    assert list(cpu.libraries(("numpy",), object())) == ["numpy", "torch"]


def _fake_results(names, suite):
    scale = {"numba": 1.0, "numpy": 4.0, "torch": 2.0}
    return {name: {spec.name: timing.Timing([scale[name] * 1e-3, scale[name] * 3e-3],
                                            [scale[name] * 2e-3], 0.5) for spec in suite}
            for name in names}


def test_ratio_columns_compare_the_subject_with_torch_then_the_other_backends():
    results = _fake_results(("numba", "numpy", "torch"), layers.TINY_SUITE)
    assert [(title, other, stat) for title, other, stat in cpu.ratio_columns("numba", results)] \
        == [("numba / torch, medians", "torch", "median"),
            ("numba / torch, minima", "torch", "min"),
            ("numba / numpy, medians", "numpy", "median")]
    no_torch = _fake_results(("numba", "numpy"), layers.TINY_SUITE)
    assert [other for _, other, _ in cpu.ratio_columns("numba", no_torch)] == ["numpy"]


def test_tables_print_a_row_per_layer_and_library(capsys):
    suite = layers.TINY_SUITE[:2]
    results = _fake_results(("numba", "numpy", "torch"), suite)
    cpu.print_table(suite, results, peak=100.0, peak_size=256)
    cpu.print_ratios(suite, results, "numba")
    out = capsys.readouterr().out
    assert "fwd med ms fwd min ms  GFLOP/s  %peak | f+b med ms" in out
    rows = [line for line in out.splitlines() if line.startswith(("L1 ", "L2 "))]
    assert len(rows) == 2 * 3 + 2   # timing rows, then one ratio row per layer
    # numba / torch medians: 2 ms / 4 ms and 2 ms / 4 ms; numba / numpy: 0.25
    assert rows[-1].split("|")[1].split() == ["0.500", "0.500"]
    assert rows[-1].split("|")[3].split() == ["0.250", "0.250"]


def test_a_lone_backend_without_torch_prints_no_ratio_table(capsys):
    suite = layers.TINY_SUITE[:1]
    cpu.print_ratios(suite, _fake_results(("numpy",), suite), "numpy")
    assert capsys.readouterr().out == ""


def test_matmul_peak_is_positive():
    assert cpu.matmul_peak_gflops(size=64, repeats=2) > 0


def test_without_torch_its_rows_are_left_out(monkeypatch, capsys):
    monkeypatch.setattr(layers, "import_torch", lambda: None)
    monkeypatch.setattr(timing, "PHASE_PAUSE_S", 0.0)
    cpu.run(tiny=True, repeats=2, rounds=1, backends=("numpy",))
    out = capsys.readouterr().out
    assert "torch is not importable: PyTorch rows left out" in out
    rows = [line.split()[:2] for line in out.splitlines() if line.startswith("L1 ")]
    assert rows == [["L1", "numpy"]]   # no torch row, no ratio table
    assert "L4: attention + aggregation" in out and "(numpy)" in out
