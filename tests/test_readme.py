"""The README's runnable section: the python block under "## Build and train a network" runs as
written (in a temporary directory, so its checkpoint file lands there)."""
import re
from pathlib import Path


README = Path(__file__).resolve().parents[1] / "README.md"
HEADING = "## Build and train a network"


def section_code(text, heading=HEADING):
    """The first ```python block after ``heading`` and before the next "## " heading, or None."""
    start = text.find("\n" + heading + "\n")
    if start < 0:
        return None
    rest = text[start + len(heading) + 2:]
    end = re.search(r"^## ", rest, flags=re.MULTILINE)
    block = re.search(r"^```python\n(.*?)^```", rest[:end.start()] if end else rest,
                      flags=re.MULTILINE | re.DOTALL)
    return None if block is None else block.group(1)


def test_the_build_and_train_section_runs(tmp_path, monkeypatch, capsys):
    code = section_code(README.read_text(encoding="utf-8"))
    assert code is not None, f"README.md has no {HEADING!r} section with a python block"
    monkeypatch.chdir(tmp_path)
    exec(compile(code, f"{README.name}: {HEADING}", "exec"), {"__name__": "__readme__"})
    out = capsys.readouterr().out
    assert "attention diagnostics on" in out and "verdict:" in out
    assert list(tmp_path.glob("*.npz")), "the section saves a checkpoint"


def test_section_code_finds_the_block_and_only_under_its_heading():
    text = ("# x\n\n## Other\n\n```python\nprint(0)\n```\n\n" + HEADING + "\n\nSome text.\n\n"
            "```python\nprint(1)\n```\n\n## Next\n\n```python\nprint(2)\n```\n")
    assert section_code(text) == "print(1)\n"
    assert section_code("# nothing here\n") is None
    assert section_code(HEADING + "\n\n## Next\n```python\nx\n```\n") is None
