"""verify.py: ``python -m dynconv_np verify`` prints one row per op and backend - the family's
variants included - and every row passes (a fast configuration: the numpy backend only)."""
from dynconv_np import verify
from dynconv_np.verify_family import VARIANTS


def test_the_table_has_a_passing_row_per_op_and_variant(capsys):
    assert verify.main(["--backends", "numpy"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.endswith(("  ok", "  FAILED"))]
    assert rows and all(line.endswith("  ok") for line in rows)
    ops = [line[:24].strip() for line in rows]
    for op in ("softmax / tau", "attention branch", "DynamicLinear layer", "per-sample conv2d",
               "conv2d (shared kernel)", "kernel aggregation", "DynamicConv2d layer"):
        assert op in ops
    family = [line for line in rows if line[:24].strip() in VARIANTS]
    assert [line[:24].strip() for line in family] == list(VARIANTS)  # one row per variant
    assert all(line[24:33].strip() == "numpy" for line in family)
    assert f"{len(rows)} passed, 0 failed" in out
