"""Transfer learning against fine-tuning on the same split: both models, a report and a recommendation.

Both runs share the dataset's split, the seed and the embeddings cache, so the second run embeds
nothing. Their events go to one stream, each tagged with its `run` ("transfer" or "finetune");
the data-health check between the runs emits untagged events. The stream ends with exactly one
terminal event: Done (its metrics are the report), Failed or Cancelled.
"""

from __future__ import annotations

import math
import statistics
import time
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field, ValidationError

from app.engine.dataset import Dataset
from app.engine.errors import ImageRejected, TeachboxError
from app.engine.events import (
    TERMINAL_TYPES,
    Cancelled,
    Done,
    EventSink,
    Log,
    Progress,
    RunEvent,
)
from app.engine.export import OnnxClassifier, write_json
from app.engine.health.report import HealthReport, analyse_health
from app.engine.images import DEFAULT_MAX_PIXELS, model_input
from app.engine.params import Mode, TrainParams
from app.engine.pipeline import terminal_event_on_error, train_to_zip
from app.engine.training import RunContext

# A difference in validation accuracy counts only when a paired test on the same images says it is
# unlikely to be chance at this level; otherwise the cheaper transfer model is recommended.
ALPHA = 0.05
LATENCY_RUNS = 10
MODES = (Mode.TRANSFER, Mode.FINETUNE)
RUN_TITLES = {
    Mode.TRANSFER: "transfer learning (frozen backbone, new head)",
    Mode.FINETUNE: "fine-tuning (last blocks retrained too)",
}
NAMES = {Mode.TRANSFER: "Transfer learning", Mode.FINETUNE: "Fine-tuning"}


class Gap(BaseModel):
    """Training minus validation accuracy: large gaps mean the model memorises rather than generalises."""

    stage: str = Field(
        description="The last training stage, whose epochs these are: head or finetune."
    )
    last: float = Field(description="In the last epoch.")
    best: float = Field(
        description="In the epoch with the best validation accuracy (the one kept)."
    )
    best_epoch: int


class ModeReport(BaseModel):
    mode: Mode
    zip: str
    val_accuracy: float
    val_interval: tuple[float, float] = Field(
        description="95 % Wilson interval of the validation accuracy."
    )
    per_class: dict[str, float | None]
    confusion_matrix: list[list[int]]
    train_seconds: float = Field(
        description="As measured; the first run includes computing the embeddings the second reuses."
    )
    embed_seconds: float = Field(
        description="Seconds this run spent computing embeddings (0 when all were cached)."
    )
    cost_seconds: float = Field(
        description="Training seconds with the embedding counted for both runs alike: what the rule compares."
    )
    export_seconds: float | None
    model_bytes: int = Field(description="Size of model.onnx.")
    zip_bytes: int
    predict_ms_p50: float = Field(
        description="Median milliseconds to classify one image with the exported model, decoding included."
    )
    train_val_gap: Gap
    params: dict[str, Any]
    history: list[dict[str, Any]]


class Paired(BaseModel):
    """How the two models fared on the same validation images."""

    n_val: int
    both_right: int
    only_transfer_right: int
    only_finetune_right: int
    both_wrong: int
    p_value: float
    alpha: float = ALPHA
    test: str = "exact two-sided McNemar test on the images where the models disagree"


class Recommendation(BaseModel):
    mode: Mode
    reason: str
    significant: bool
    paired: Paired


class CompareReport(BaseModel):
    format: Literal["teachbox-compare/1"] = "teachbox-compare/1"
    labels: list[str]
    n_train: int
    n_val: int
    seed: int
    modes: dict[str, ModeReport] = Field(description="Keyed by mode: transfer, finetune.")
    recommendation: Mode
    reason: str
    paired: Paired
    health: HealthReport
    seconds: float


# ---------------------------------------------------------------- the rule


def mcnemar_p(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value: how likely so lopsided a split of the disagreements is by chance."""
    n = only_a + only_b
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(only_a, only_b) + 1)) / 2**n
    return min(1.0, 2 * tail)


def wilson_interval(correct: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return (0.0, 1.0)
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4))


def paired_outcomes(
    transfer_correct: Sequence[bool], finetune_correct: Sequence[bool], alpha: float = ALPHA
) -> Paired:
    if len(transfer_correct) != len(finetune_correct):
        raise ValueError("Both models must be scored on the same validation images.")
    pairs = list(zip(transfer_correct, finetune_correct, strict=True))
    only_t = sum(t and not f for t, f in pairs)
    only_f = sum(f and not t for t, f in pairs)
    both = sum(t and f for t, f in pairs)
    return Paired(
        n_val=len(pairs),
        both_right=both,
        only_transfer_right=only_t,
        only_finetune_right=only_f,
        both_wrong=len(pairs) - both - only_t - only_f,
        p_value=round(mcnemar_p(only_t, only_f), 4),
        alpha=alpha,
    )


def recommend(
    transfer_correct: Sequence[bool],
    finetune_correct: Sequence[bool],
    transfer_seconds: float,
    finetune_seconds: float,
    alpha: float = ALPHA,
) -> Recommendation:
    """The better model on the validation images, unless the difference is within noise: then transfer.

    The seconds are each mode's training cost (the embedding counted for both); they only enter the sentence.
    """
    paired = paired_outcomes(transfer_correct, finetune_correct, alpha)
    significant = (
        paired.p_value < alpha and paired.only_transfer_right != paired.only_finetune_right
    )
    finetune_wins = significant and paired.only_finetune_right > paired.only_transfer_right
    mode = Mode.FINETUNE if finetune_wins else Mode.TRANSFER
    return Recommendation(
        mode=mode,
        reason=reason_sentence(paired, significant, transfer_seconds, finetune_seconds),
        significant=significant,
        paired=paired,
    )


def times(ratio: float) -> str:
    """'6×', '2.5×', '14×': one decimal below ten, none from ten on."""
    text = f"{ratio:.0f}" if ratio >= 10 else f"{ratio:.1f}".removesuffix(".0")
    return text + "×"


def points(difference: float, adjective: bool = False) -> str:
    """Percentage points: '14 points', or '14-point' before a noun."""
    value = abs(difference) * 100
    number = f"{value:.0f}" if value >= 1 else f"{value:.1f}"
    if adjective:
        return f"{number}-point"
    return f"{number} point" + ("" if number == "1" else "s")


def reason_sentence(
    paired: Paired, significant: bool, transfer_seconds: float, finetune_seconds: float
) -> str:
    n = paired.n_val
    t = (paired.both_right + paired.only_transfer_right) / n if n else 0.0
    f = (paired.both_right + paired.only_finetune_right) / n if n else 0.0
    ratio = finetune_seconds / max(transfer_seconds, 1e-9)
    cost = (
        f"{times(ratio)} faster to train"
        if ratio >= 1.1
        else "as fast to train"
        if ratio > 0.9
        else f"{times(1 / ratio)} slower to train"
    )
    on = f"on {n} validation images"
    disagree = paired.only_transfer_right + paired.only_finetune_right
    if significant and f > t:
        return (
            f"Fine-tuning gains {points(f - t)} on this data ({f:.2f} vs {t:.2f} {on}, McNemar p = {paired.p_value:.3f}), "
            f"worth its {times(ratio)} training time."
        )
    if significant:
        return f"Transfer learning beats fine-tuning by {points(t - f)} ({t:.2f} vs {f:.2f} {on}, McNemar p = {paired.p_value:.3f}) and is {cost}."
    if disagree == 0 or t == f:
        return (
            f"Both models score {t:.2f} {on}, so the transfer model is recommended: it is {cost}."
        )
    leader, lead, low = ("Fine-tuning", f, t) if f > t else ("Transfer learning", t, f)
    return (
        f"{leader}'s {points(lead - low, adjective=True)} lead ({lead:.2f} vs {low:.2f} {on}) is within noise (the models "
        f"disagree on only {disagree} image{'' if disagree == 1 else 's'}, McNemar p = {paired.p_value:.2f}), so the transfer "
        f"model is recommended: it is {cost}."
    )


# ---------------------------------------------------------------- measuring one model


def train_val_gap(history: list[dict[str, Any]]) -> Gap:
    """The gap in the last stage's last epoch and in its best validation epoch."""
    stage = history[-1]["stage"]
    epochs = [h for h in history if h["stage"] == stage]
    best = max(epochs, key=lambda h: h["val_acc"])
    last = epochs[-1]
    return Gap(
        stage=stage,
        last=round(last["train_acc"] - last["val_acc"], 4),
        best=round(best["train_acc"] - best["val_acc"], 4),
        best_epoch=best["epoch"],
    )


def model_sizes(zip_path: Path) -> tuple[int, int]:
    """Bytes of model.onnx and of the whole zip."""
    with zipfile.ZipFile(zip_path) as archive:
        return archive.getinfo("model.onnx").file_size, zip_path.stat().st_size


def predict_latency_ms(
    zip_paths: Sequence[Path], image: Path, runs: int = LATENCY_RUNS
) -> list[float]:
    """Median milliseconds for one image through each exported model, decoding included, as a deployment runs it.

    The models take turns, so that a busy machine slows them alike and the comparison stays fair.
    """
    classifiers = [OnnxClassifier.from_zip(path) for path in zip_paths]
    data = image.read_bytes()
    timings: list[list[float]] = [[] for _ in classifiers]
    for run in range(runs + 1):
        for classifier, spent in zip(classifiers, timings, strict=True):
            tick = time.perf_counter()
            classifier.predict_bytes(data)
            if run:  # the first call warms the session up
                spent.append(time.perf_counter() - tick)
    return [round(statistics.median(spent) * 1000, 3) for spent in timings]


def score_zip(
    zip_path: Path,
    paths: Sequence[Path],
    labels: Sequence[int],
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> list[bool]:
    """Whether the exported model gets each image right (unreadable images count as wrong)."""
    classifier = OnnxClassifier.from_zip(zip_path)
    prep = classifier.preprocessing
    correct = []
    for start in range(0, len(paths), 32):
        arrays, rows = [], []
        for offset, path in enumerate(paths[start : start + 32]):
            try:
                arrays.append(model_input(path, prep, max_pixels=max_pixels))
                rows.append(offset)
            except ImageRejected:
                continue
        predicted = classifier.predict_arrays(np.stack(arrays)).argmax(1) if arrays else []
        hits = {row: int(p) for row, p in zip(rows, predicted, strict=True)}
        correct += [hits.get(k) == labels[start + k] for k in range(len(paths[start : start + 32]))]
    return correct


def validation_outcomes(
    metrics: Mapping[str, Any],
    paths: Sequence[Path],
    labels: Sequence[int],
    zip_path: Path,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> list[bool]:
    """Right or wrong per validation image: from the run's list of mistakes, or by re-scoring when that list was cut short."""
    wrong = {m["path"] for m in metrics["misclassified"]}
    n_wrong = metrics["n_val"] - round(metrics["val_accuracy"] * metrics["n_val"])
    if len(paths) == metrics["n_val"] and len(wrong) >= n_wrong:
        return [str(path) not in wrong for path in paths]
    return score_zip(zip_path, paths, labels, max_pixels)


def mode_report(
    mode: Mode,
    metadata: dict[str, Any],
    zip_path: Path,
    latency_ms: float,
    embed_seconds: float,
    first_embed_seconds: float,
) -> ModeReport:
    metrics = metadata["metrics"]
    model_bytes, zip_bytes = model_sizes(zip_path)
    n = metrics["n_val"]
    return ModeReport(
        mode=mode,
        zip=str(zip_path),
        val_accuracy=metrics["val_accuracy"],
        val_interval=wilson_interval(round(metrics["val_accuracy"] * n), n),
        per_class=metrics["per_class"],
        confusion_matrix=metrics["confusion_matrix"],
        train_seconds=metrics["train_seconds"],
        embed_seconds=round(embed_seconds, 3),
        cost_seconds=round(metrics["train_seconds"] - embed_seconds + first_embed_seconds, 3),
        export_seconds=metrics.get("export_seconds"),
        model_bytes=model_bytes,
        zip_bytes=zip_bytes,
        predict_ms_p50=latency_ms,
        train_val_gap=train_val_gap(metrics["history"]),
        params=metadata["params"],
        history=metrics["history"],
    )


# ---------------------------------------------------------------- running both


def mode_params(
    params: TrainParams, mode: Mode, epochs: Mapping[Mode, int] | None = None
) -> TrainParams:
    """The shared parameters for one mode; `epochs` overrides the epochs per mode."""
    values = {**params.model_dump(), "mode": mode}
    if epochs and mode in epochs:
        values["epochs"] = epochs[mode]
    try:
        return TrainParams.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise TeachboxError(f"Invalid {mode.value} parameters: {problems}.", 422) from None


class RunEvents:
    """Forwards one run's events tagged with the run, holds back its terminal event, and times its embedding."""

    def __init__(self, on_event: EventSink, run: Mode) -> None:
        self.on_event, self.run = on_event, run
        self.terminal: list[Any] = []
        self.embed_seconds = 0.0
        self._embed_started: float | None = None

    def __call__(self, event: Any) -> None:
        if getattr(event, "type", None) in TERMINAL_TYPES:
            self.terminal.append(event)
            return
        if isinstance(event, Progress) and event.stage == "embed" and event.total:
            self._time_embedding(event)
        self.on_event(
            event.model_copy(update={"run": self.run.value})
            if isinstance(event, RunEvent)
            else event
        )

    def _time_embedding(self, event: Progress) -> None:
        now = time.perf_counter()
        if event.done == 0:
            self._embed_started = now
        elif event.done >= event.total and self._embed_started is not None:
            self.embed_seconds = now - self._embed_started


def compare_modes(
    dataset: Dataset,
    params: TrainParams,
    out_dir: Path,
    run: RunContext,
    epochs: Mapping[Mode, int] | None = None,
) -> dict[str, Any]:
    """Train both modes on `dataset`'s split; write transfer.zip, finetune.zip and report.json; return the report."""
    cancelled = Cancelled(message="The comparison was cancelled.")
    with terminal_event_on_error(run.on_event, cancelled, "The comparison", "the log"):
        report = _compare(dataset, params, out_dir, run, epochs)
    chosen = report["modes"][report["recommendation"]]
    run.on_event(
        Done(val_accuracy=chosen["val_accuracy"], train_seconds=report["seconds"], metrics=report)
    )
    return report


def _compare(
    dataset: Dataset,
    params: TrainParams,
    out_dir: Path,
    run: RunContext,
    epochs: Mapping[Mode, int] | None,
) -> dict[str, Any]:
    started = time.perf_counter()
    run_params = {mode: mode_params(params, mode, epochs) for mode in MODES}
    out_dir.mkdir(parents=True, exist_ok=True)

    def train(number: int, mode: Mode) -> tuple[dict[str, Any], float]:
        run.on_event(Log(run=mode.value, message=f"Run {number} of 2: {RUN_TITLES[mode]}."))
        return _train(dataset, run_params[mode], out_dir / f"{mode.value}.zip", run)

    runs = {Mode.TRANSFER: train(1, Mode.TRANSFER)}
    # Between the runs every embedding is cached, and the user reads the warnings while fine-tuning runs.
    health = analyse_health(
        dataset,
        embedder=run.embedder,
        params=run_params[Mode.TRANSFER],
        on_event=run.on_event,
        should_stop=run.should_stop,
    )
    for finding in health.findings:
        if finding.severity == "warning":
            run.on_event(Log(level="warning", message=finding.message))
    runs[Mode.FINETUNE] = train(2, Mode.FINETUNE)
    return summarise(
        dataset,
        {mode: metadata for mode, (metadata, _) in runs.items()},
        {mode: s for mode, (_, s) in runs.items()},
        out_dir,
        health,
        params.seed,
        started,
        run.max_pixels,
    )


def summarise(
    dataset: Dataset,
    runs: dict[Mode, dict[str, Any]],
    embed_seconds: dict[Mode, float],
    out_dir: Path,
    health: HealthReport,
    seed: int,
    started: float,
    max_pixels: int,
) -> dict[str, Any]:
    """Measure both exported models, apply the rule, and write report.json."""
    skipped = {entry["path"] for entry in runs[Mode.TRANSFER]["metrics"]["skipped"] or []}
    val = [s for s in dataset.val if str(s.path) not in skipped]
    paths, labels = [s.path for s in val], [s.label for s in val]
    zips = [out_dir / f"{mode.value}.zip" for mode in MODES]
    latency = dict(zip(MODES, predict_latency_ms(zips, paths[0]), strict=True))
    first_embed = max(embed_seconds.values())
    modes = {
        mode: mode_report(
            mode, runs[mode], zip_path, latency[mode], embed_seconds[mode], first_embed
        )
        for mode, zip_path in zip(MODES, zips, strict=True)
    }
    outcomes = {
        mode: validation_outcomes(runs[mode]["metrics"], paths, labels, zip_path, max_pixels)
        for mode, zip_path in zip(MODES, zips, strict=True)
    }
    choice = recommend(
        outcomes[Mode.TRANSFER],
        outcomes[Mode.FINETUNE],
        modes[Mode.TRANSFER].cost_seconds,
        modes[Mode.FINETUNE].cost_seconds,
    )
    report = CompareReport(
        labels=runs[Mode.TRANSFER]["labels"],
        n_train=runs[Mode.TRANSFER]["metrics"]["n_train"],
        n_val=len(paths),
        seed=seed,
        modes={mode.value: modes[mode] for mode in MODES},
        recommendation=choice.mode,
        reason=choice.reason,
        paired=choice.paired,
        health=health,
        seconds=round(time.perf_counter() - started, 3),
    ).model_dump(mode="json")
    write_json(out_dir / "report.json", report)
    return report


def _train(
    dataset: Dataset, params: TrainParams, out_path: Path, run: RunContext
) -> tuple[dict[str, Any], float]:
    """One run through train_to_zip: its metadata and the seconds it spent computing embeddings."""
    events = RunEvents(run.on_event, params.mode)
    try:
        metadata = train_to_zip(dataset, params, out_path, run.reporting_to(events))
    except TeachboxError as exc:
        raise TeachboxError(f"{NAMES[params.mode]} failed: {exc.message}", exc.status_code) from exc
    return metadata, events.embed_seconds
