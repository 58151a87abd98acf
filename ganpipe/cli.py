"""Command line: parses arguments only, then calls one function per command.

Exit codes: 0 done, 1 the job ran and failed (e.g. a diverged trial), 2 bad input
(reported before anything starts, one line per problem).
"""
from __future__ import annotations

import argparse
import sys

from ganpipe.config.errors import ConfigError

EXIT_FAILED, EXIT_BAD_INPUT = 1, 2


def _add_set(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
        help="override a config value (YAML syntax), e.g. --set optimizer.lr_g=2e-4 --set loss=wgan-gp",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ganpipe", description="Find stable GAN training settings.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("trial", help="train one trial in this process (no Ray), for debugging")
    p.add_argument("sweep", help="sweep YAML; search entries take their first choice / midpoint")
    _add_set(p)
    p.add_argument("--out", help="output folder (new or empty); default runs/trial-NAME-TIME")
    p.add_argument("--threads", type=int, help="torch threads; default the sweep's resources.cpu")
    p.add_argument("--pdb", action="store_true", help="drop into the debugger on an exception")

    p = sub.add_parser("sweep", help="run a sweep on Ray Tune with Optuna search, tracked in MLflow")
    p.add_argument("sweep", help="sweep YAML")
    _add_set(p)
    p.add_argument("--address", help="join a Ray cluster: auto, HOST:PORT or ray://HOST:10001; "
                   "default an in-process local Ray")
    p.add_argument("--num-samples", type=int, help="number of trials (overrides search.num_samples)")
    p.add_argument("--tracking-uri", help="MLflow tracking URI; default tracking.uri, $MLFLOW_TRACKING_URI "
                   "or sqlite:///mlflow.db")
    p.add_argument("--storage", help="Tune results and checkpoints (a shared path on clusters); "
                   "default ./ray_results")
    p.add_argument("--num-cpus", type=int, help="CPUs of the local Ray (no --address); default all")
    p.add_argument("--resume", action="store_true", help="continue the latest run of this sweep")
    p.add_argument("--dry-run", action="store_true", help="print config, space, resources and budget; start nothing")

    p = sub.add_parser("ui", help="the MLflow UI on 127.0.0.1 for a tracking store")
    p.add_argument("--tracking-uri", help="default $MLFLOW_TRACKING_URI or sqlite:///mlflow.db")
    p.add_argument("--port", type=int, default=5000)
    p.add_argument("--host", default="127.0.0.1", help="bind address; default loopback only")

    p = sub.add_parser("features", help="feature extractors of the evaluation protocol")
    fsub = p.add_subparsers(dest="features_command", required=True)
    ft = fsub.add_parser("train", help="train a dataset's feature classifier reproducibly")
    ft.add_argument("dataset", help="dataset name, e.g. digits")
    ft.add_argument("--out", help="weights file; default the one shipped inside the package")
    return parser


def _run(args: argparse.Namespace) -> int:
    if args.command == "trial":
        from ganpipe.trial import run_trial

        result = run_trial(args.sweep, args.overrides, args.out, args.threads)
        return 0 if result.status == "finished" else EXIT_FAILED
    if args.command == "sweep":
        from pathlib import Path

        from ganpipe.config import load_sweep
        from ganpipe.tune.driver import SweepOptions, run_sweep

        sweep = load_sweep(args.sweep, args.overrides)
        opts = SweepOptions(args.address, args.num_samples, args.tracking_uri, args.storage, args.resume,
                            args.dry_run, args.num_cpus)
        return run_sweep(sweep, Path(args.sweep).read_text(), opts)
    if args.command == "ui":
        from ganpipe.ui import run_ui

        return run_ui(args.tracking_uri, args.host, args.port)
    if args.command == "features":
        from ganpipe.metrics.features_cli import train_features

        try:
            info = train_features(args.dataset, args.out)
        except ValueError as err:
            print(f"ganpipe features train: {err}", file=sys.stderr)
            return EXIT_BAD_INPUT
        print(f"wrote {info['path']}: held-out accuracy {info['heldout_accuracy']:.4f}, sha256 {info['sha256']}")
        return 0
    raise AssertionError(args.command)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except ConfigError as err:
        for problem in err.problems:
            print(problem, file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception:
        if getattr(args, "pdb", False):
            import pdb
            import traceback

            traceback.print_exc()
            pdb.post_mortem(sys.exc_info()[2])
            return EXIT_FAILED
        raise


if __name__ == "__main__":
    sys.exit(main())
