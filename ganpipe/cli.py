"""Command line: parses arguments only, then calls one function per command.

Exit codes: 0 done, 1 the job ran and failed (e.g. a diverged trial), 2 bad input
(reported before anything starts, one line per problem).
"""
from __future__ import annotations

import argparse
import sys

from ganpipe.config.errors import ConfigError, Problem

EXIT_FAILED, EXIT_BAD_INPUT = 1, 2


def _add_set(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
        help="override a config value (YAML syntax), e.g. --set optimizer.lr_g=2e-4 --set loss=wgan-gp",
    )


def build_parser() -> argparse.ArgumentParser:
    from ganpipe import __version__

    parser = argparse.ArgumentParser(prog="ganpipe", description="Find stable GAN training settings.")
    parser.add_argument("--version", action="version", version=f"ganpipe {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

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

    p = sub.add_parser("run", help="run a multi-stage pipeline (sweep -> narrow -> recheck -> promote)")
    p.add_argument("pipeline", help="pipeline YAML, e.g. pipelines/stability.yaml")
    _add_set(p)
    p.add_argument("--address", help="join a Ray cluster; default an in-process local Ray")
    p.add_argument("--tracking-uri", help="default $MLFLOW_TRACKING_URI or sqlite:///mlflow.db")
    p.add_argument("--storage", help="pipeline folder parent (Tune results, state); default ./ray_results")
    p.add_argument("--num-cpus", type=int, help="CPUs of the local Ray (no --address); default all")
    p.add_argument("--resume", action="store_true", help="continue the latest run of this pipeline")

    p = sub.add_parser("promote", help="register a sweep's best generator in the MLflow Model Registry")
    p.add_argument("--experiment", required=True, help="MLflow experiment (the sweep name)")
    p.add_argument("--parent-run", help="the sweep's parent run id; default the latest sweep run")
    p.add_argument("--tracking-uri", help="default $MLFLOW_TRACKING_URI or sqlite:///mlflow.db")
    p.add_argument("--dry-run", action="store_true", help="say what would be registered; register nothing")

    p = sub.add_parser("sample", help="sample a registered model or a checkpoint to a PNG (or .npy)")
    p.add_argument("source", help="models:/NAME@champion, runs:/ID/generator, or a checkpoint file/folder")
    p.add_argument("-n", type=int, default=64, help="number of samples")
    p.add_argument("-o", "--out", default="samples.png", help="output .png (grid or scatter) or .npy")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--label", type=int, help="class-conditional models: the class index; default every class "
                   "in turn (a column per class)")
    p.add_argument("--tracking-uri", help="for models:/ URIs; default $MLFLOW_TRACKING_URI or sqlite:///mlflow.db")

    p = sub.add_parser("server", help="an MLflow tracking server (database backend, proxied artifacts)")
    p.add_argument("--backend-store-uri", default="sqlite:///mlflow-server.db",
                   help="sqlite:///FILE or postgresql://USER:PASS@HOST:PORT/DB")
    p.add_argument("--artifacts-destination", default="mlartifacts",
                   help="where the server keeps artifacts: a folder or s3://bucket/path")
    p.add_argument("--host", default="127.0.0.1", help="bind address; default loopback only")
    p.add_argument("--port", type=int, default=5000)
    p.add_argument("--workers", type=int, default=1)

    p = sub.add_parser("report", help="the stability report of a sweep or pipeline: one HTML page with its PNGs")
    p.add_argument("target", metavar="EXPERIMENT_OR_PARENT_RUN",
                   help="an experiment (its latest pipeline, else sweep run) or a sweep's or pipeline's parent run id")
    p.add_argument("-o", "--out", help="output folder; default ./report-RUN (RUN: the run's name)")
    p.add_argument("--tracking-uri", help="default $MLFLOW_TRACKING_URI or sqlite:///mlflow.db")

    p = sub.add_parser("ui", help="the MLflow UI on 127.0.0.1 for a tracking store")
    p.add_argument("--tracking-uri", help="default $MLFLOW_TRACKING_URI or sqlite:///mlflow.db")
    p.add_argument("--port", type=int, default=5000)
    p.add_argument("--host", default="127.0.0.1", help="bind address; default loopback only")

    p = sub.add_parser("features", help="feature extractors of the evaluation protocol")
    fsub = p.add_subparsers(dest="features_command", required=True)
    ft = fsub.add_parser("train", help="train a dataset's feature classifier reproducibly")
    ft.add_argument("dataset", help="digits, digits-translation (both shipped), mnist, fashion-mnist, cifar10 or "
                    "image-folder (with class sub-folders)")
    _add_set(ft)
    ft.add_argument("--out", help="weights file; default the one shipped inside the package (digits, digits-translation) or "
                    "$GANPIPE_HOME/features/DATASET-SIZExCHANNELS.pt (default ~/.cache/ganpipe/features/...)")
    ft.add_argument("--epochs", type=int, help="training epochs (datasets from files); default about 1500 minibatches")
    ft.add_argument("--seed", type=int, help="training seed; default 0")
    return parser


def _check_counts(args: argparse.Namespace) -> None:
    """Counts that must be positive when given (argparse only checks that they are integers); --num-samples is
    run_sweep's own check."""
    for flag in ("threads", "num_cpus"):
        value = getattr(args, flag, None)
        if value is not None and value < 1:
            option = "--" + flag.replace("_", "-")
            raise ConfigError([Problem(option, flag, f"must be >= 1, got {value}")])


def _run(args: argparse.Namespace) -> int:
    _check_counts(args)
    if args.command in ("sweep", "run", "trial"):
        from ganpipe.tune.interrupt import sigterm_as_ctrl_c

        sigterm_as_ctrl_c()  # sweeps again once Ray has started: ray.init installs its own SIGTERM handler
    if args.command == "trial":
        from ganpipe.trial import run_trial

        result = run_trial(args.sweep, args.overrides, args.out, args.threads)
        return 0 if result.status == "finished" else EXIT_FAILED
    if args.command == "sweep":
        from pathlib import Path

        from ganpipe.preflight import load_checked_sweep
        from ganpipe.tune.driver import SweepOptions, run_sweep

        sweep = load_checked_sweep(args.sweep, args.overrides)
        opts = SweepOptions(args.address, args.num_samples, args.tracking_uri, args.storage, args.resume,
                            args.dry_run, args.num_cpus, overrides=list(args.overrides))
        return run_sweep(sweep, Path(args.sweep).read_text(), opts).exit_code
    if args.command == "run":
        from ganpipe.pipeline.config import load_pipeline
        from ganpipe.pipeline.runner import PipelineOptions, run_pipeline

        pipeline = load_pipeline(args.pipeline, args.overrides)
        return run_pipeline(pipeline, PipelineOptions(args.address, args.tracking_uri, args.storage, args.resume,
                                                      args.num_cpus))
    if args.command == "promote":
        return _promote(args)
    if args.command == "sample":
        from ganpipe import tracking
        from ganpipe.sample import run_sample

        if args.n < 1:
            raise ConfigError([Problem("-n", "n", f"must be >= 1, got {args.n}")])
        uri = tracking.resolve_uri(args.tracking_uri)
        try:
            path = run_sample(args.source, args.n, args.out, args.seed, uri, args.label)
        except ValueError as e:
            if "--label" not in str(e):
                raise
            raise ConfigError([Problem("--label", "label", str(e))]) from None
        except tracking.TrackingUnavailable as err:
            print(f"sampling stopped: {err}", file=sys.stderr)
            return EXIT_FAILED
        print(f"wrote {path}")
        return 0
    if args.command == "server":
        from ganpipe.server import run_server

        return run_server(args.backend_store_uri, args.artifacts_destination, args.host, args.port, args.workers)
    if args.command == "ui":
        from ganpipe.ui import run_ui

        return run_ui(args.tracking_uri, args.host, args.port)
    if args.command == "report":
        from ganpipe.report.cli import run_report

        return run_report(args.target, args.out, args.tracking_uri)
    if args.command == "features":
        return _features(args)
    raise AssertionError(args.command)


def _features(args: argparse.Namespace) -> int:
    from ganpipe.metrics.features_cli import TRAINABLE, data_config, train_features

    if args.epochs is not None and args.epochs < 1:
        raise ConfigError([Problem("--epochs", "epochs", f"must be >= 1, got {args.epochs}")])
    if args.seed is not None and args.seed < 0:
        raise ConfigError([Problem("--seed", "seed", f"must be >= 0, got {args.seed}")])
    try:
        if args.dataset in ("digits", "digits-translation") or args.dataset not in TRAINABLE:
            if args.overrides and args.dataset in ("digits", "digits-translation"):
                raise ConfigError([Problem("--set", "data", f"{args.dataset} is shipped with the package: it takes "
                                                            "no --set")])
            data = args.dataset  # an unknown name: train_features lists the valid ones
        else:
            data = data_config(args.dataset, args.overrides)  # ConfigError: exit 2 before training
        info = train_features(data, args.out, seed=args.seed, epochs=args.epochs,
                              device="cuda" if _cuda() else "cpu", log=print)
    except ValueError as err:
        print(f"ganpipe features train: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    extra = ""
    if "classes" in info:
        extra = (f" ({info['n_train']} train / {info['n_heldout']} held-out images, {len(info['classes'])} classes, "
                 f"{info['image_size']}x{info['image_size']}x{info['channels']})")
    print(f"wrote {info['path']}: held-out accuracy {info['heldout_accuracy']:.4f}, sha256 {info['sha256']}{extra}")
    return 0


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _promote(args: argparse.Namespace) -> int:
    import json
    import tempfile
    from pathlib import Path

    from ganpipe import tracking
    from ganpipe.config.schema import PromoteConfig, ResourcesConfig
    from ganpipe.promote import PromotionRefused, find_parent
    from ganpipe.tune.recheck import recheck_and_promote

    uri = tracking.resolve_uri(args.tracking_uri)
    why = tracking.check_reachable(uri)
    if why:
        raise ConfigError([Problem("--tracking-uri", "tracking.uri", why)])
    if tracking.store_missing(uri):
        raise ConfigError([Problem("--experiment", "experiment", f"no MLflow experiment named {args.experiment!r}: "
                                   f"the tracking store {uri} does not exist (--tracking-uri, $MLFLOW_TRACKING_URI)")])
    try:  # any other failure of the store (a 5xx, 401, timeout) stops here in one line, never read as "absent"
        with tracking.failures_stop(f"tracking store {uri}"):
            c = tracking.client(uri)
            _, parent = find_parent(c, args.experiment, args.parent_run)  # ConfigError: no such experiment or run
            with tempfile.TemporaryDirectory() as tmp:  # the sweep as it ran, --set overrides included
                text = tracking.read_text_artifact(c, parent.info.run_id, "sweep_config.json", Path(tmp))
            if text is None:
                raise ConfigError([Problem("--parent-run", "parent_run", f"run {parent.info.run_id} is no sweep's "
                                           "parent run (it has no sweep_config.json); give the run `ganpipe sweep` "
                                           "started")])
            ran = json.loads(text)
            decision = recheck_and_promote(uri, PromoteConfig(**ran["promote"]), ran["search"]["objectives"],
                                           [parent.info.run_id], ResourcesConfig(**ran["resources"]), args.dry_run)
    except PromotionRefused as err:
        print(f"promotion refused: {err}", file=sys.stderr)
        return EXIT_FAILED
    except tracking.TrackingUnavailable as err:
        print(f"promotion stopped: {err}", file=sys.stderr)
        return EXIT_FAILED
    for line in decision.refused:
        print(f"gated out: {line}")
    print(decision.message)
    return 0


def main(argv: list[str] | None = None) -> int:
    import os

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no bars in logs
    parser = build_parser()
    if not (sys.argv[1:] if argv is None else argv):  # bare `ganpipe`: what it can do, not an error
        parser.print_help()
        return 0
    args = parser.parse_args(argv)
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
