"""The command line: ``python -m dynconv_np COMMAND``.

    demo     train a static CNN and its dynamic twin on the embedded digits (the main job)
    verify   check every op's backward against finite differences, per backend; print a table
    costs    params and multiply-adds of the paper's networks, static vs dynamic
    bench    the layer benchmark suite (see dynconv_np/bench/README.md)
    warmup   compile every Numba kernel ahead of first use (before a lesson)

Each command's implementation lives in the module that owns the subject; this file only
dispatches (imports are lazy so that ``--help`` is instant).
"""
import argparse
import importlib
import sys

COMMANDS = {
    "demo": ("dynconv_np.train.demo", "train static vs dynamic CNNs on the embedded digits"),
    "verify": ("dynconv_np.verify", "gradient-check every op and backend, print a table"),
    "costs": ("dynconv_np.models.costs", "params and MAdds of the paper's networks"),
    "bench": ("dynconv_np.bench", "benchmark the layer suite"),
    "warmup": ("dynconv_np.warmup", "compile every Numba kernel ahead of first use"),
}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(prog="python -m dynconv_np", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=sorted(COMMANDS),
                        help="; ".join(f"{name}: {text}" for name, (_, text) in COMMANDS.items()))
    args, rest = parser.parse_known_args(argv[:1])
    module = importlib.import_module(COMMANDS[args.command][0])
    return module.main(argv[1:] + rest)


if __name__ == "__main__":
    sys.exit(main())
