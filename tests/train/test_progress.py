"""The text progress bar: what it draws, that it redraws in place, and that it can be silenced."""
import io

import pytest

from dynconv_np.train.progress import ProgressBar


def test_draws_counter_bar_and_info_then_ends_the_line():
    out = io.StringIO()
    with ProgressBar(4, "run", file=out, width=8, min_interval=0.0, live=True) as bar:
        bar.update(loss=1.5)
        bar.update(3, loss=0.25, epoch="2/2")
    lines = out.getvalue().split("\r")[1:]
    assert lines[0].startswith("run  [##......]  1/4  loss 1.5000")
    assert lines[-1].startswith("run  [########]  4/4  loss 0.2500  epoch 2/2")
    assert out.getvalue().endswith("\n") and out.getvalue().count("\n") == 1


def test_shorter_redraw_erases_the_previous_line():
    out = io.StringIO()
    bar = ProgressBar(2, "x", file=out, min_interval=0.0, live=True)
    bar.update(info="a long piece of text")
    bar.update(info="b")
    first, second = out.getvalue().split("\r")[1:]
    assert len(second) >= len(first)


def test_disabled_bar_writes_nothing_and_throttling_skips_redraws():
    out = io.StringIO()
    with ProgressBar(3, file=out, disable=True) as bar:
        bar.update(3)
    assert out.getvalue() == ""
    out = io.StringIO()
    bar = ProgressBar(100, file=out, min_interval=3600, live=True)
    for _ in range(99):
        bar.update()
    assert out.getvalue() == ""                      # throttled until the end
    bar.update()
    assert "100/100" in out.getvalue()


def test_not_a_terminal_gets_only_the_final_line():
    out = io.StringIO()                               # isatty() is False
    with ProgressBar(3, "log", file=out, min_interval=0.0) as bar:
        for _ in range(3):
            bar.update(loss=0.5)
    assert out.getvalue().startswith("\rlog  [") and out.getvalue().count("\r") == 1
    assert "3/3  loss 0.5000" in out.getvalue() and out.getvalue().endswith("\n")


def test_negative_total_is_refused():
    with pytest.raises(ValueError, match="total must be >= 0"):
        ProgressBar(-1)
