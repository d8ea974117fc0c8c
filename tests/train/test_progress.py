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


def test_every_redraw_fits_80_columns_on_one_line():
    out = io.StringIO()
    description = "dynamic net, seed 9 (run 20/20)"      # what the demo's runs are called
    with ProgressBar(1680, description, file=out, min_interval=0.0, live=True,
                     columns=80) as bar:
        for step in range(1680):
            bar.update(epoch=f"{step // 84 + 1}/20", loss=f"{0.5 + step / 1e4:.3f}",
                       test="81.2%")
    text = out.getvalue()
    assert text.count("\n") == 1 and text.endswith("\n")          # one line, redrawn
    redraws = text[:-1].split("\r")[1:]
    assert len(redraws) == 1681 and all(len(line) <= 79 for line in redraws)
    assert all(line.startswith(description) for line in redraws)
    assert "epoch 20/20  loss 0.668  test 81.2%" in redraws[-1]    # nothing said is cut
    wide = ProgressBar(1680, description, columns=120)
    wide.update(840, epoch="10/20")
    assert "[##########..........]  840/1680  epoch 10/20" in wide.render(columns=120)


def test_narrow_terminal_drops_counter_bar_then_description():
    bar = ProgressBar(10, "a long description of what runs", live=True)
    bar.update(3, loss=0.25)
    assert bar.render(columns=200).startswith("a long description of what runs  [######")
    line = bar.render(columns=70)          # the counter went, the bar shrank
    assert "3/10" not in line and "[" in line and len(line) <= 69
    line = bar.render(columns=60)          # no room for a bar
    assert line.startswith("a long description of what runs  loss 0.2500  ~")
    assert len(line) <= 59
    line = bar.render(columns=40)          # the description is shortened
    assert line.startswith("a long d") and ".." in line and "loss 0.2500" in line
    assert len(bar.render(columns=20)) == 19


def test_shows_the_time_left_while_running():
    bar = ProgressBar(4, "x", live=True)
    bar.update(1)
    assert bar.render(now=bar.start + 2.0).endswith("1/4  ~6 s left")   # 2 s for 1 of 4
    bar.update(3)
    assert bar.render(now=bar.start + 5.0).endswith("4/4  5.0 s")        # done: elapsed
