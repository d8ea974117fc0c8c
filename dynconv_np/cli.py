"""The command line: ``python -m dynconv_np COMMAND``.

    demo     a static CNN and its dynamic twin on digits-mixed, with a verdict (the main job)
    verify   check every op's backward against finite differences, per backend; print a table
    costs    params and multiply-adds of the paper's networks, static vs dynamic
    bench    the layer (or --networks: network) benchmark (see dynconv_np/bench/README.md)
    warmup   compile every Numba kernel ahead of first use (before a lesson)
    compare  a PyTorch dynamic convolution (FILE.py:CLASS) against the reference, stage by stage
    fixtures write the golden fixture set for other implementations (--out DIR)
    check-fixtures  grade an implementation's outputs (DIR RESULTS) against the fixtures

Each command's implementation lives in the module that owns the subject; this file only
dispatches (imports are lazy so that ``--help`` is instant).
"""
import argparse
import importlib
import sys

COMMANDS = {
    "demo": ("dynconv_np.train.demo", "static vs dynamic CNNs on digits-mixed, with a verdict"),
    "verify": ("dynconv_np.verify", "gradient-check every op and backend, print a table"),
    "costs": ("dynconv_np.models.costs", "params and MAdds of the paper's networks"),
    "bench": ("dynconv_np.bench", "benchmark the layer suite"),
    "warmup": ("dynconv_np.warmup", "compile every Numba kernel ahead of first use"),
    "compare": ("dynconv_np.interop.harness", "compare a PyTorch dynamic convolution with the "
                "reference, stage by stage"),
    "fixtures": ("dynconv_np.interop.fixtures", "write golden fixtures for other "
                 "implementations"),
    "check-fixtures": ("dynconv_np.interop.grade", "grade outputs against the "
                       "fixtures"),
}


def main(argv=None):
    """Dispatch to the command's ``main``. A user error (bad arguments, a missing file or data
    directory, a backend this machine lacks) prints one line, "python -m dynconv_np COMMAND:
    error: ...", and exits with status 2, without a traceback; Ctrl-C exits with 130."""
    argv = sys.argv[1:] if argv is None else list(argv)
    usage_error = argparse.ArgumentParser.error
    argparse.ArgumentParser.error = _one_line_usage_error  # every parser, while main runs
    prog = "python -m dynconv_np"
    try:
        description = __doc__.split("\n\nEach ")[0].replace("``", "")  # no developer notes
        parser = argparse.ArgumentParser(prog=prog, description=description,
                                         formatter_class=argparse.RawDescriptionHelpFormatter)
        parser.add_argument("command", choices=sorted(COMMANDS),
                            help="; ".join(f"{name}: {text}"
                                           for name, (_, text) in COMMANDS.items()))
        args, rest = parser.parse_known_args(argv[:1])
        prog = f"{prog} {args.command}"
        module = importlib.import_module(COMMANDS[args.command][0])
        return module.main(argv[1:] + rest)
    except _UsageError as error:
        print(error, file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    except Exception as error:  # noqa: BLE001 - only user errors are caught, others re-raised
        if not _is_user_error(error):
            raise
        print(f"{prog}: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    finally:
        argparse.ArgumentParser.error = usage_error


class _UsageError(Exception):
    """An argparse error, as one line (see ``_one_line_usage_error``)."""


def _one_line_usage_error(parser, message):
    """Replaces ``ArgumentParser.error`` while ``main`` runs: instead of the usage block and
    the message, one line that names the command and points to its --help."""
    raise _UsageError(f"{parser.prog}: error: {message} (see {parser.prog} --help)")


# What a user can cause and fix without reading code: missing or unreadable files and
# directories, and these errors of the package (by name, so that nothing is imported here).
_USER_ERRORS = {"CudaUnavailableError", "DataFileError", "CheckpointError"}


def _is_user_error(error):
    if isinstance(error, (FileNotFoundError, NotADirectoryError, IsADirectoryError,
                          PermissionError)):
        return True
    return any(cls.__name__ in _USER_ERRORS and cls.__module__.startswith("dynconv_np")
               for cls in type(error).__mro__)


if __name__ == "__main__":
    sys.exit(main())
