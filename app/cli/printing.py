"""What the command line prints: a live progress line, the comparison table, the health report."""

from __future__ import annotations

import sys
import time
from typing import Any

from pydantic import BaseModel

from app.engine.events import Done, Epoch, Failed, Log, Progress, Started
from app.engine.params import Mode


class ProgressPrinter:
    """Renders training events as a one-line progress bar on stderr, with a line per epoch."""

    def __init__(self, stream: Any = sys.stderr, width: int = 28) -> None:
        self.stream, self.width = stream, width
        self.interactive = hasattr(stream, "isatty") and stream.isatty()
        self._last_draw = 0.0

    def __call__(self, event: BaseModel) -> None:
        if isinstance(event, Started):
            images = (
                f"{event.n_train} images, each validated out of fold, then all trained on"
                if event.validation == "cross-validation"
                else f"{event.n_train} train / {event.n_val} validation images"
            )
            self._line(
                f"Training {event.mode} on {event.backbone} ({event.device}): {images}, "
                f"classes {', '.join(event.labels)}"
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
            self._line(f"Done: {estimate_text(event)}, trained in {event.train_seconds:.1f}s")
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


def estimate_text(event: Done) -> str:
    """'expected accuracy on new images 0.890 (0.850-0.921; 5-fold cross-validation, ...)'."""
    found = event.metrics.get("estimate")
    if not found:  # a comparison's Done carries its report instead
        return f"validation accuracy {event.val_accuracy:.3f}"
    return (
        f"expected accuracy on new images {found['accuracy']:.3f} "
        f"(95 % interval {found['low']:.3f}-{found['high']:.3f}; {found['method']})"
    )


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
