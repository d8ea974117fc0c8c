"""Grade an implementation's outputs against the golden fixtures:
``python -m dynconv_np check-fixtures DIR RESULTS``.

DIR is a fixture set (``python -m dynconv_np fixtures``); RESULTS a directory of ``.npz`` files
with the same names (``CASE.DTYPE.npz``), each holding any of the fixture's intermediates and
gradients under the same array names. Every array present is graded (max |result - expected|
<= the fixture's atol, shapes equal, finite); a missing file or array is listed as missing and
is not a failure, unless ``--require-all``. Exit status 1 on any failure (or when nothing at
all was graded), else 0.
"""
import argparse
import json
import os
import sys
from dataclasses import dataclass

import numpy as np


@dataclass
class Grade:
    case: str
    array: str
    status: str          # "pass", "FAIL", "missing", "ignored"
    max_err: float = float("nan")
    atol: float = float("nan")
    note: str = ""


def check_fixtures(fixtures, results, require_all=False):
    """[Grade] for every fixture array (see the module docstring)."""
    with open(os.path.join(fixtures, "index.json"), encoding="utf-8") as f:
        index = json.load(f)
    grades = []
    for case in index["cases"]:
        graded = {key: spec for key, spec in case["arrays"].items() if "atol" in spec}
        path = os.path.join(results, case["file"])
        if not os.path.exists(path):
            grades.append(Grade(case["name"], "*", "FAIL" if require_all else "missing",
                                note=f"no {case['file']} in {results}"))
            continue
        with np.load(os.path.join(fixtures, case["file"]), allow_pickle=False) as expected, \
                np.load(path, allow_pickle=False) as result:
            for key in sorted(result.files):
                if key not in graded:
                    grades.append(Grade(case["name"], key, "ignored",
                                        note="not an intermediate or gradient of this fixture"))
            for key, spec in graded.items():
                if key not in result.files:
                    grades.append(Grade(case["name"], key,
                                        "FAIL" if require_all else "missing"))
                    continue
                grades.append(_grade(case["name"], key, expected[key], result[key],
                                     spec["atol"]))
    return grades


def _grade(case, key, expected, result, atol):
    if result.dtype.kind not in "fiu":
        return Grade(case, key, "FAIL", atol=atol, note=f"dtype {result.dtype}")
    if result.shape != expected.shape:
        return Grade(case, key, "FAIL", atol=atol,
                     note=f"shape {result.shape}, expected {expected.shape}")
    result = result.astype(np.float64)
    if not np.isfinite(result).all():
        return Grade(case, key, "FAIL", atol=atol, note="NaN or inf")
    err = float(np.abs(result - expected.astype(np.float64)).max()) if result.size else 0.0
    return Grade(case, key, "pass" if err <= atol else "FAIL", err, atol)


def format_grades(grades):
    lines = [f"{'fixture':<34} {'array':<12} {'max err':>9} {'atol':>9}  result"]
    for g in grades:
        err = "-" if not np.isfinite(g.max_err) else f"{g.max_err:.2e}"
        atol = "-" if not np.isfinite(g.atol) else f"{g.atol:.2e}"
        lines.append(f"{g.case:<34} {g.array:<12} {err:>9} {atol:>9}  {g.status}"
                     + (f"  ({g.note})" if g.note else ""))
    counts = {s: sum(g.status == s for g in grades) for s in ("pass", "FAIL", "missing")}
    lines.append(f"{counts['pass']} passed, {counts['FAIL']} failed, {counts['missing']} missing")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m dynconv_np check-fixtures",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("fixtures", help="the fixture directory (with index.json)")
    parser.add_argument("results", help="a directory of CASE.DTYPE.npz results")
    parser.add_argument("--require-all", action="store_true",
                        help="a missing result file or array is a failure")
    args = parser.parse_args(argv)
    grades = check_fixtures(args.fixtures, args.results, args.require_all)
    print(format_grades(grades))
    if not any(g.status == "pass" for g in grades):
        print("nothing was graded: no result array matched a fixture")
        return 1
    return 1 if any(g.status == "FAIL" for g in grades) else 0


if __name__ == "__main__":
    sys.exit(main())
