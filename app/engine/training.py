"""The training core: transfer learning and fine-tuning, with typed events and cancellation.

No web imports. `fit` takes a dataset, a TrainParams and a RunContext; it reports through the
context's `on_event` and stops between batches when its `should_stop()` turns true (raising
TrainingCancelled).
"""

from __future__ import annotations

import copy
import gc
import math
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageEnhance, ImageOps
from torch import nn

from app.engine.backbones import FeatureExtractor, build_backbone, get_spec
from app.engine.dataset import Dataset, Sample
from app.engine.embeddings import Embedder, resolve_device
from app.engine.errors import TeachboxError, TrainingCancelled
from app.engine.events import Epoch, EventSink, Log, Progress, Started, ignore_event
from app.engine.images import (
    DEFAULT_MAX_PIXELS,
    Preprocessing,
    decode_image,
    model_input,
    normalise,
)
from app.engine.params import Mode, TrainParams

WEIGHT_DECAY = 1e-4
# With 0.1 the unfrozen blocks barely move in a short run; 0.3 (with 8 blocks and 15 epochs) is what
# made fine-tuning beat transfer on greyscale digits, and stays within noise on flowers
# (bench/RESULTS.md, "Fine-tuning recipe").
BACKBONE_LR_FACTOR = 0.3
FINETUNE_HEAD_EPOCHS = 30
# 400 validation images take 20 MB after MobileNetV2's first 11 blocks (64 x 14 x 14 floats each).
VAL_PREFIX_CACHE_BYTES = 512 * 2**20
MISCLASSIFIED_LIMIT = 100
# channels_last lets oneDNN and cuDNN pick their fastest convolutions (about 1.8x on this CPU).
FINETUNE_MEMORY_FORMAT = torch.channels_last

StopCheck = Callable[[], bool]


def never_stop() -> bool:
    return False


@dataclass(frozen=True)
class RunContext:
    """How a run is carried out, apart from what it learns (TrainParams) and from what (Dataset):
    where features come from, where events go, when to stop, on what device, with which weights."""

    embedder: Embedder
    on_event: EventSink = ignore_event
    should_stop: StopCheck = never_stop
    device: str = "auto"
    weights_path: Path | None = None
    max_pixels: int = DEFAULT_MAX_PIXELS

    def reporting_to(self, on_event: EventSink) -> RunContext:
        return replace(self, on_event=on_event)


class Classifier(nn.Module):
    """Backbone features, then the head, then softmax: what the exported model.onnx computes."""

    def __init__(self, extractor: FeatureExtractor, head: nn.Module) -> None:
        super().__init__()
        self.extractor = extractor
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.head(self.extractor(x)), dim=1)


def make_head(feature_dim: int, n_classes: int) -> nn.Sequential:
    """A linear classifier: on flowers-dev and clothing-dev it matched or beat both a 100-unit hidden
    layer and input dropout, and trains twice as fast as with dropout (bench/RESULTS.md)."""
    return nn.Sequential(nn.Linear(feature_dim, n_classes))


@dataclass
class TrainResult:
    labels: list[str]
    params: TrainParams
    model: Classifier
    history: list[dict[str, Any]]
    metrics: dict[str, Any]
    val_paths: list[Path]
    train_seconds: float
    device: str
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    val_labels: list[int] = field(default_factory=list)
    train_paths: list[Path] = field(default_factory=list)


@dataclass
class EpochStats:
    loss: float
    acc: float


def epoch_event(
    stage: str, epoch: int, epochs: int, train: EpochStats, val: EpochStats, started: float
) -> Epoch:
    return Epoch(
        stage=stage,
        epoch=epoch,
        epochs=epochs,
        train_loss=train.loss,
        train_acc=train.acc,
        val_loss=val.loss,
        val_acc=val.acc,
        seconds=time.perf_counter() - started,
    )


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


# What PyTorch says when an accelerator runs out of memory (CUDA, cuBLAS, Apple's MPS).
_OUT_OF_MEMORY_MARKERS = ("out of memory", "CUBLAS_STATUS_ALLOC_FAILED")


def is_out_of_memory(exc: BaseException) -> bool:
    """True for an accelerator running out of memory: an error a smaller batch may avoid."""
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and any(
        marker in str(exc) for marker in _OUT_OF_MEMORY_MARKERS
    )


def release_accelerator_memory() -> None:
    """Hand the memory PyTorch's caching allocator keeps back to the device, before trying again."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def check_finite(loss: torch.Tensor, epoch: int, params: TrainParams) -> None:
    if not torch.isfinite(loss):
        raise TeachboxError(
            f"Training diverged: the loss became {loss.item()} in epoch {epoch}. "
            f"Lower the learning rate (for example to {params.learning_rate / 10:g}) and train again.",
            422,
        )


# ---------------------------------------------------------------- head on embeddings


@dataclass
class Embedded:
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor


def embed_dataset(
    data: Dataset, embedder: Embedder, on_event: EventSink, should_stop: StopCheck
) -> tuple[Dataset, Embedded]:
    """Embeddings for every image (cached ones reused); unreadable images are reported and dropped."""
    started = time.perf_counter()

    def progress(done: int, total: int) -> None:
        elapsed = time.perf_counter() - started
        eta = elapsed / done * (total - done) if done else None
        on_event(Progress(stage="embed", done=done, total=total, eta_s=eta))

    paths = [s.path for s in data.train + data.val]
    result = embedder.embed(paths, on_progress=progress, should_stop=should_stop)
    for path, reason in result.rejected.items():
        on_event(Log(level="warning", message=f"Skipped {path.name}: {reason}"))
    clean = data.without(set(result.rejected))
    clean.skipped = data.skipped + list(result.rejected.items())
    if not clean.train or not clean.val:
        raise TeachboxError(
            "No readable images are left after skipping the unreadable ones. Add valid images.", 422
        )

    def tensors(samples: Sequence[Sample]) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.from_numpy(result.matrix([s.path for s in samples]).astype(np.float32))
        return x, torch.tensor([s.label for s in samples], dtype=torch.long)

    return clean, Embedded(*tensors(clean.train), *tensors(clean.val))


@torch.no_grad()
def evaluate_logits(logits: torch.Tensor, targets: torch.Tensor) -> EpochStats:
    loss = nn.functional.cross_entropy(logits, targets).item()
    return EpochStats(loss, (logits.argmax(1) == targets).float().mean().item())


_single_thread_lock = threading.RLock()


@contextmanager
def single_thread() -> Iterator[None]:
    """Run tiny tensor work on one thread: for a linear head, thread hand-offs cost more than they save.

    torch's thread count is process-wide, so users (a job's head, a health check's curve) take
    turns: each restores exactly the count it found.
    """
    with _single_thread_lock:
        previous = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(previous)


@single_thread()
def train_head(
    head: nn.Module,
    emb: Embedded,
    params: TrainParams,
    epochs: int,
    stage: str,
    on_event: EventSink,
    should_stop: StopCheck,
    generator: torch.Generator,
) -> list[dict[str, Any]]:
    """Adam on cached embeddings; the head ends at its best validation epoch."""
    optimiser = torch.optim.Adam(
        head.parameters(), lr=params.learning_rate, weight_decay=WEIGHT_DECAY
    )
    history: list[dict[str, Any]] = []
    best = (-1.0, math.inf)
    best_state = copy.deepcopy(head.state_dict())
    for epoch in range(1, epochs + 1):
        tick = time.perf_counter()
        train = _head_epoch(head, optimiser, emb, params, epoch, should_stop, generator)
        head.eval()
        val = evaluate_logits(head(emb.x_val), emb.y_val)
        event = epoch_event(stage, epoch, epochs, train, val, tick)
        on_event(event)
        history.append(event.model_dump(exclude={"type"}))
        if (val.acc, -val.loss) > (best[0], -best[1]):
            best = (val.acc, val.loss)
            best_state = copy.deepcopy(head.state_dict())
    head.load_state_dict(best_state)
    head.eval()
    return history


def _head_epoch(
    head: nn.Module,
    optimiser: torch.optim.Optimizer,
    emb: Embedded,
    params: TrainParams,
    epoch: int,
    should_stop: StopCheck,
    generator: torch.Generator,
) -> EpochStats:
    head.train()
    order = torch.randperm(len(emb.y_train), generator=generator)
    # Sums stay tensors until the epoch ends: per-step .item() calls cost as much as the step itself.
    total_loss, correct = torch.zeros(()), torch.zeros((), dtype=torch.long)
    for start in range(0, len(order), params.batch_size):
        if should_stop():
            raise TrainingCancelled
        index = order[start : start + params.batch_size]
        logits = head(emb.x_train[index])
        targets = emb.y_train[index]
        loss = nn.functional.cross_entropy(logits, targets)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        total_loss += loss.detach() * len(index)
        correct += (logits.argmax(1) == targets).sum()
    check_finite(total_loss, epoch, params)
    return EpochStats(total_loss.item() / len(order), correct.item() / len(order))


# ---------------------------------------------------------------- fine-tuning


def bf16_supported_on_cpu() -> bool:
    """True on CPUs with native bf16 (AMX or AVX-512 BF16), where autocast speeds training up."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def freeze_for_finetune(
    extractor: FeatureExtractor, block_names: list[str], n_unfreeze: int
) -> tuple[nn.Module, nn.Module]:
    """Split the features into a frozen prefix and a trainable suffix of the last `n_unfreeze` blocks."""
    blocks = list(extractor.features.children())
    cut = len(blocks) - n_unfreeze
    prefix, suffix = nn.Sequential(*blocks[:cut]), nn.Sequential(*blocks[cut:])
    prefix.requires_grad_(False)
    return prefix, suffix


def keep_batchnorm_frozen(module: nn.Module) -> None:
    """Use ImageNet running statistics in BatchNorm: small batches would otherwise wreck them."""
    for layer in module.modules():
        if isinstance(layer, nn.modules.batchnorm._BatchNorm):
            layer.eval()


def augment(image: Image.Image, prep: Preprocessing, rng: random.Random) -> Image.Image:
    """Random resized crop (50-100 % of the area), horizontal flip and colour jitter, seeded per image."""
    width, height = image.size
    box = None
    for _ in range(10):
        area = width * height * rng.uniform(0.5, 1.0)
        ratio = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
        crop_w, crop_h = round(math.sqrt(area * ratio)), round(math.sqrt(area / ratio))
        if 0 < crop_w <= width and 0 < crop_h <= height:
            left, top = rng.randint(0, width - crop_w), rng.randint(0, height - crop_h)
            box = (left, top, left + crop_w, top + crop_h)
            break
    if box is None:
        side = min(width, height)
        box = ((width - side) // 2, (height - side) // 2, (width + side) // 2, (height + side) // 2)
    out = image.resize((prep.crop_size, prep.crop_size), Image.Resampling.BILINEAR, box=box)
    if rng.random() < 0.5:
        out = ImageOps.mirror(out)
    for enhancer in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
        out = enhancer(out).enhance(rng.uniform(0.8, 1.2))
    return out


@dataclass
class FinetuneLoader:
    """Decodes, augments and normalises image batches in threads, one batch ahead of the network."""

    samples: list[Sample]
    prep: Preprocessing
    batch_size: int
    train: bool
    max_pixels: int = DEFAULT_MAX_PIXELS
    workers: int = 2

    def _load(self, sample: Sample, seed: int) -> np.ndarray:
        image = decode_image(
            sample.path, self.max_pixels, draft_shorter_side=2 * self.prep.resize_size
        )
        if not self.train:
            return model_input(image, self.prep)
        return normalise(augment(image, self.prep, random.Random(seed)), self.prep)

    def batches(self, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = (
            torch.randperm(len(self.samples), generator=generator).tolist()
            if self.train
            else list(range(len(self.samples)))
        )
        seeds = torch.randint(0, 2**31 - 1, (len(order),), generator=generator).tolist()
        chunks = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        with ThreadPoolExecutor(self.workers, thread_name_prefix="finetune-data") as pool:
            pending = None
            for chunk in [*chunks, None]:
                upcoming = (
                    [pool.submit(self._load, self.samples[i], seeds[i]) for i in chunk]
                    if chunk is not None
                    else None
                )
                if pending is not None:
                    arrays, labels = pending
                    yield (
                        torch.from_numpy(np.stack([f.result() for f in arrays])),
                        torch.tensor(labels),
                    )
                pending = (
                    (upcoming, [self.samples[i].label for i in chunk])
                    if chunk is not None
                    else None
                )

    def __len__(self) -> int:
        return math.ceil(len(self.samples) / self.batch_size)


class FinetuneRunner:
    """Runs the frozen prefix without autograd and trains the suffix and head, mixed-precision where it pays."""

    def __init__(
        self,
        model: Classifier,
        prefix: nn.Module,
        suffix: nn.Module,
        device: torch.device,
        params: TrainParams,
    ) -> None:
        self.model, self.prefix, self.suffix, self.device = model, prefix, suffix, device
        self.autocast_dtype = self._autocast_dtype(device)
        self.scaler = (
            torch.amp.GradScaler("cuda")
            if device.type == "cuda" and self.autocast_dtype == torch.float16
            else None
        )
        head_lr = params.learning_rate
        self.optimiser = torch.optim.AdamW(
            [
                {"params": suffix.parameters(), "lr": head_lr * BACKBONE_LR_FACTOR},
                {"params": model.head.parameters(), "lr": head_lr},
            ],
            weight_decay=WEIGHT_DECAY,
        )
        # The frozen prefix's output for the validation images, which never changes: computed once.
        self._val_prefix: list[tuple[torch.Tensor, torch.Tensor]] | None = None

    @staticmethod
    def _autocast_dtype(device: torch.device) -> torch.dtype | None:
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if device.type == "cpu" and bf16_supported_on_cpu():
            return torch.bfloat16
        return None

    def _to_device(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.device.type == "cuda":
            x, y = x.pin_memory(), y.pin_memory()
        x = x.to(self.device, non_blocking=True).contiguous(memory_format=FINETUNE_MEMORY_FORMAT)
        return x, y.to(self.device, non_blocking=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with self._autocast():
            with torch.no_grad():
                frozen = self.prefix(x)
            return self._suffix_and_head(frozen)

    def _autocast(self, mixed_precision: bool = True) -> torch.autocast:
        return torch.autocast(
            self.device.type,
            dtype=self.autocast_dtype or torch.float32,
            enabled=mixed_precision and self.autocast_dtype is not None,
        )

    def _suffix_and_head(self, frozen: torch.Tensor) -> torch.Tensor:
        pooled = torch.flatten(nn.functional.adaptive_avg_pool2d(self.suffix(frozen), 1), 1)
        return self.model.head(pooled).float()

    def train_step(
        self, x: torch.Tensor, y: torch.Tensor, epoch: int, params: TrainParams
    ) -> tuple[float, int]:
        x, y = self._to_device(x, y)
        logits = self.forward(x)
        loss = nn.functional.cross_entropy(logits, y)
        check_finite(loss, epoch, params)
        self.optimiser.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimiser)
            self.scaler.update()
        else:
            loss.backward()
            self.optimiser.step()
        return loss.item() * len(y), int((logits.argmax(1) == y).sum())

    @torch.no_grad()
    def predict(
        self, loader: FinetuneLoader, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits in float32, as the exported model computes them.

        Validation picks the epoch that is exported and reports its accuracy, so it must not run in
        bf16: on greyscale digits a bf16 pass disagreed with float32 on one top-1 in ten. Float32
        costs three times bf16 here, so the frozen prefix runs once over the validation images
        and each epoch runs only the trained blocks and the head (when the prefix's output fits
        in VAL_PREFIX_CACHE_BYTES).
        """
        self.model.eval()
        outputs, targets = [], []
        with self._autocast(mixed_precision=False):
            if self._val_prefix is not None:
                for frozen, y in self._val_prefix:
                    outputs.append(self._suffix_and_head(frozen).cpu())
                    targets.append(y)
                return torch.cat(outputs), torch.cat(targets)
            kept: list[tuple[torch.Tensor, torch.Tensor]] | None = []
            size = 0
            for x, y in loader.batches(generator):
                frozen = self.prefix(self._to_device(x, y)[0])
                outputs.append(self._suffix_and_head(frozen).cpu())
                targets.append(y)
                size += frozen.numel() * frozen.element_size()
                if kept is not None and size <= VAL_PREFIX_CACHE_BYTES:
                    kept.append((frozen, y))
                else:
                    kept = None
        self._val_prefix = kept
        return torch.cat(outputs), torch.cat(targets)


def warmup_cosine(
    optimiser: torch.optim.Optimizer, total_steps: int, warmup_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over the first epoch, then cosine decay to zero.

    Without the warm-up, Adam's first full-size steps knock the unfrozen blocks (whose BatchNorm
    statistics stay frozen) far from their pretrained values and accuracy can drop to chance.
    """

    def factor(step: int) -> float:
        warm = min(1.0, (step + 1) / max(1, warmup_steps))
        return warm * 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / max(1, total_steps)))

    return torch.optim.lr_scheduler.LambdaLR(optimiser, factor)


def run_finetune(
    model: Classifier,
    data: Dataset,
    params: TrainParams,
    device: torch.device,
    on_event: EventSink,
    should_stop: StopCheck,
    generator: torch.Generator,
    max_pixels: int,
) -> tuple[list[dict[str, Any]], torch.Tensor, torch.Tensor]:
    """Unfreeze the last blocks and train them with the head; keep the best validation epoch."""
    spec = get_spec(params.backbone)
    prep = spec.preprocessing
    model.to(device, memory_format=FINETUNE_MEMORY_FORMAT)
    prefix, suffix = freeze_for_finetune(
        model.extractor, spec.block_names, params.resolved_unfreeze_blocks
    )
    runner = FinetuneRunner(model, prefix, suffix, device, params)
    train_loader = FinetuneLoader(
        data.train, prep, params.batch_size, train=True, max_pixels=max_pixels
    )
    val_loader = FinetuneLoader(
        data.val, prep, params.batch_size, train=False, max_pixels=max_pixels
    )
    epochs = params.resolved_epochs
    scheduler = warmup_cosine(
        runner.optimiser, total_steps=epochs * len(train_loader), warmup_steps=len(train_loader)
    )
    val_logits, val_targets = runner.predict(val_loader, generator)
    best_acc = evaluate_logits(val_logits, val_targets).acc
    best_state, best_outputs = copy.deepcopy(model.state_dict()), (val_logits, val_targets)
    history: list[dict[str, Any]] = []
    for epoch in range(1, epochs + 1):
        tick = time.perf_counter()
        train = _finetune_epoch(
            runner, scheduler, train_loader, params, epoch, epochs, on_event, should_stop, generator
        )
        val_logits, val_targets = runner.predict(val_loader, generator)
        val = evaluate_logits(val_logits, val_targets)
        event = epoch_event("finetune", epoch, epochs, train, val, tick)
        on_event(event)
        history.append(event.model_dump(exclude={"type"}))
        if val.acc > best_acc:
            best_acc, best_state, best_outputs = (
                val.acc,
                copy.deepcopy(model.state_dict()),
                (val_logits, val_targets),
            )
    model.load_state_dict(best_state)
    model.requires_grad_(True)
    return history, *best_outputs


def _finetune_epoch(
    runner: FinetuneRunner,
    scheduler,
    loader: FinetuneLoader,
    params: TrainParams,
    epoch: int,
    epochs: int,
    on_event: EventSink,
    should_stop: StopCheck,
    generator: torch.Generator,
) -> EpochStats:
    runner.model.train()
    keep_batchnorm_frozen(runner.model)
    total_loss, correct, seen = 0.0, 0, 0
    started = time.perf_counter()
    for step, (x, y) in enumerate(loader.batches(generator), start=1):
        if should_stop():
            raise TrainingCancelled
        loss_sum, n_correct = runner.train_step(x, y, epoch, params)
        scheduler.step()
        total_loss, correct, seen = total_loss + loss_sum, correct + n_correct, seen + len(y)
        elapsed = time.perf_counter() - started
        on_event(
            Progress(
                stage="finetune",
                epoch=epoch,
                done=step,
                total=len(loader),
                eta_s=elapsed / step * (len(loader) - step)
                + elapsed / step * len(loader) * (epochs - epoch),
            )
        )
    return EpochStats(total_loss / max(seen, 1), correct / max(seen, 1))


# ---------------------------------------------------------------- metrics and the entry point


def classification_metrics(
    probs: torch.Tensor, targets: torch.Tensor, labels: list[str], paths: list[Path]
) -> dict[str, Any]:
    """Accuracy, per-class accuracy, confusion matrix (rows: true, columns: predicted) and the mistakes."""
    predicted = probs.argmax(1)
    n = len(labels)
    confusion = torch.zeros(n, n, dtype=torch.long)
    for t, p in zip(targets.tolist(), predicted.tolist(), strict=True):
        confusion[t, p] += 1
    per_class = {
        label: (
            confusion[i, i].item() / row_total if (row_total := int(confusion[i].sum())) else None
        )
        for i, label in enumerate(labels)
    }
    mistakes = [
        {
            "path": str(path),
            "true": labels[t],
            "predicted": labels[p],
            "probability": round(float(probs[i, p]), 4),
        }
        for i, (path, t, p) in enumerate(
            zip(paths, targets.tolist(), predicted.tolist(), strict=True)
        )
        if t != p
    ]
    return {
        "val_accuracy": (predicted == targets).float().mean().item() if len(targets) else 0.0,
        "per_class": per_class,
        "confusion_matrix": confusion.tolist(),
        "labels": labels,
        "misclassified": mistakes[:MISCLASSIFIED_LIMIT],
        "n_val": len(targets),
    }


def fit(data: Dataset, params: TrainParams, run: RunContext) -> TrainResult:
    """Train a classifier on `data` as `params` says; raise TrainingCancelled when stopped."""
    started = time.perf_counter()
    on_event, should_stop = run.on_event, run.should_stop
    target = resolve_device(run.device)
    spec = get_spec(params.backbone)
    stages = ["embed", "head"] + (["finetune"] if params.mode is Mode.FINETUNE else []) + ["export"]
    on_event(
        Started(
            mode=params.mode.value,
            backbone=params.backbone,
            device=target.type,
            n_train=len(data.train),
            n_val=len(data.val),
            labels=data.labels,
            epochs=params.resolved_epochs,
            stages=stages,
        )
    )
    generator = seed_everything(params.seed)
    clean, emb = embed_dataset(data, run.embedder, on_event, should_stop)
    head = make_head(spec.feature_dim, len(clean.labels))
    head_epochs = params.resolved_epochs if params.mode is Mode.TRANSFER else FINETUNE_HEAD_EPOCHS
    history = train_head(head, emb, params, head_epochs, "head", on_event, should_stop, generator)
    model = Classifier(build_backbone(params.backbone, run.weights_path).eval(), head)
    if params.mode is Mode.FINETUNE:
        on_event(
            Log(
                message=f"Fine-tuning the last {params.resolved_unfreeze_blocks} blocks on {target.type}."
            )
        )
        more, logits, targets = run_finetune(
            model, clean, params, target, on_event, should_stop, generator, run.max_pixels
        )
        history += more
        probs = torch.softmax(logits, 1)
        model.to("cpu", memory_format=torch.contiguous_format)
    else:
        with torch.no_grad():
            probs = torch.softmax(head(emb.x_val), 1)
        targets = emb.y_val
    model.eval()
    metrics = classification_metrics(probs, targets, clean.labels, [s.path for s in clean.val])
    seconds = time.perf_counter() - started
    metrics.update(
        n_train=len(clean.train),
        epochs_run=len(history),
        train_seconds=round(seconds, 3),
        device=target.type,
        history=history,
        skipped=[{"path": str(p), "reason": r} for p, r in clean.skipped],
    )
    return TrainResult(
        clean.labels,
        params,
        model,
        history,
        metrics,
        [s.path for s in clean.val],
        seconds,
        target.type,
        clean.skipped,
        [s.label for s in clean.val],
        [s.path for s in clean.train],
    )
