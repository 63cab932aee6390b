"""Fine-tuning: the last backbone blocks retrained with the head, augmented images decoded in threads."""

from __future__ import annotations

import copy
import math
import random
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageEnhance, ImageOps
from torch import nn

from app.engine.backbones import FeatureExtractor, get_spec
from app.engine.best import BestEpoch, beats
from app.engine.context import StopCheck
from app.engine.dataset import Dataset, Sample
from app.engine.errors import TrainingCancelled
from app.engine.events import EventSink, Log, Progress
from app.engine.head import (
    WEIGHT_DECAY,
    EpochStats,
    check_finite,
    epoch_event,
    evaluate_logits,
)
from app.engine.images import (
    DEFAULT_MAX_PIXELS,
    Preprocessing,
    decode_image,
    model_input,
    normalise,
)
from app.engine.network import Classifier
from app.engine.params import TrainParams

# With 0.1 the unfrozen blocks barely move in a short run; 0.3 (with 8 blocks and 15 epochs) is what
# made fine-tuning beat transfer on greyscale digits, and stays within noise on flowers
# (bench/RESULTS.md, "Fine-tuning recipe").
BACKBONE_LR_FACTOR = 0.3

# Each unfrozen block below the last learns at this factor times the rate of the block above it.
# 1: a smaller rate for the lower blocks (0.8) kept everyday photos above transfer but gave back
# most of the gain on small defects (bench/RESULTS.md, "A smaller learning rate for the lower blocks").
BLOCK_LR_DECAY = 1.0

# Shares of the fine-tuned weights tried in an average with the head-only model's (weight-space
# ensembling, as in WiSE-FT), besides the fine-tuned weights alone; the held-out images choose.
# Averaging kept what fine-tuning gained on small defects and gave back what it lost on everyday
# photos (bench/RESULTS.md, "Averaging fine-tuned and head-only weights").
AVERAGE_SHARES = (0.75, 0.5, 0.25)


# 400 validation images take 20 MB after MobileNetV2's first 11 blocks (64 x 14 x 14 floats each).
VAL_PREFIX_CACHE_BYTES = 512 * 2**20


# channels_last lets oneDNN and cuDNN pick their fastest convolutions (about 1.8x on this CPU).
FINETUNE_MEMORY_FORMAT = torch.channels_last


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


def block_param_groups(suffix: nn.Module, top_lr: float, decay: float) -> list[dict[str, Any]]:
    """One optimiser group per unfrozen block: the last block at `top_lr`, each one below it at
    `decay` times the rate of the block above."""
    blocks = list(suffix.children())
    return [
        {"params": block.parameters(), "lr": top_lr * decay ** (len(blocks) - 1 - i)}
        for i, block in enumerate(blocks)
    ]


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

            def submit(chunk: list[int]) -> list[Future[np.ndarray]]:
                return [pool.submit(self._load, self.samples[i], seeds[i]) for i in chunk]

            # The next batch decodes while the network works on this one.
            ahead = submit(chunks[0]) if chunks else []
            for k, chunk in enumerate(chunks):
                current, ahead = ahead, submit(chunks[k + 1]) if k + 1 < len(chunks) else []
                yield (
                    torch.from_numpy(np.stack([f.result() for f in current])),
                    torch.tensor([self.samples[i].label for i in chunk]),
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
                *block_param_groups(suffix, head_lr * BACKBONE_LR_FACTOR, BLOCK_LR_DECAY),
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


@dataclass
class FinetuneOutcome:
    history: list[dict[str, Any]]  # one entry per fine-tuning epoch
    logits: torch.Tensor  # the kept model's, on the held-out images
    targets: torch.Tensor
    # False where no fine-tuned model (nor any average) beat the head-only one it started from,
    # which the model then holds.
    improved: bool


def run_finetune(
    model: Classifier,
    data: Dataset,
    params: TrainParams,
    device: torch.device,
    on_event: EventSink,
    should_stop: StopCheck,
    generator: torch.Generator,
    max_pixels: int,
) -> FinetuneOutcome:
    """Unfreeze the last blocks and train them with the head; keep the best settled epoch (or its
    average with the head-only weights where the held-out images prefer one), or the head-only
    model where even that is worse on both held-out accuracy and loss (then `improved` is False)."""
    spec = get_spec(params.backbone)
    prep = spec.preprocessing
    model.to(device).to(memory_format=FINETUNE_MEMORY_FORMAT)
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
    start = evaluate_logits(val_logits, val_targets)
    head_only = copy.deepcopy((model.state_dict(), val_logits, val_targets))
    first_settled = settled_from(epochs)
    best = BestEpoch()
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
        if epoch >= first_settled:
            best.offer(epoch, val.acc, val.loss, (model.state_dict(), val_logits, val_targets))
    n_val = len(val_targets)
    kept_alone = EpochStats(best.loss, best.accuracy)
    share, tuned, kept = average_with_head_only(
        runner, val_loader, generator, head_only[0], best.kept, kept_alone
    )
    improved = not head_only_better(start, tuned)
    if not improved:
        on_event(
            Log(
                level="warning",
                message=f"Fine-tuning ended below its starting point on the {n_val} held-out images "
                f"(accuracy {tuned.acc:.0%} against {start.acc:.0%}, loss {tuned.loss:.2f} against "
                f"{start.loss:.2f}).",
            )
        )
        state, best_logits, best_targets = head_only
    else:
        averaged = (
            ""
            if share == 1.0
            else f", averaged with the head-only weights ({share:.0%} fine-tuned; "
            f"fine-tuned alone: {kept_alone.acc:.0%})"
        )
        on_event(
            Log(
                message=f"Kept fine-tuning epoch {best.epoch}{averaged}: {tuned.acc:.0%} on the "
                f"{n_val} held-out images (head only: {start.acc:.0%})."
            )
        )
        state, best_logits, best_targets = kept
    model.load_state_dict(state)
    model.requires_grad_(True)
    return FinetuneOutcome(history, best_logits, best_targets, improved)


def averaged_weights(
    head_only: dict[str, torch.Tensor], tuned: dict[str, torch.Tensor], share: float
) -> dict[str, torch.Tensor]:
    """`share` of the fine-tuned weights plus the rest of the head-only ones; integer buffers
    (BatchNorm's batch counters) are the fine-tuned model's."""
    return {
        name: torch.lerp(head_only[name], value, share) if value.is_floating_point() else value
        for name, value in tuned.items()
    }


def average_with_head_only(
    runner: FinetuneRunner,
    val_loader: FinetuneLoader,
    generator: torch.Generator,
    head_only: dict[str, torch.Tensor],
    kept: tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor],
    kept_stats: EpochStats,
) -> tuple[float, EpochStats, tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]]:
    """The kept epoch's weights, or an average of them with the head-only model's where that
    scores strictly better on the held-out images (accuracy, then loss): the fine-tuned share,
    its held-out score, and its (state, logits, targets).

    Fine-tuning all blocks gains most on images far from ImageNet but can lose a few points on
    everyday photos; an average keeps the fine-tuned features' gains while pulling back towards
    the pretrained ones, which the held-out images show to be better on such photos.
    """
    choice, chosen_stats, chosen = 1.0, kept_stats, kept
    for share in AVERAGE_SHARES:
        state = averaged_weights(head_only, kept[0], share)
        runner.model.load_state_dict(state)
        logits, targets = runner.predict(val_loader, generator)
        stats = evaluate_logits(logits, targets)
        if beats(stats.acc, stats.loss, chosen_stats.acc, chosen_stats.loss):
            choice, chosen_stats, chosen = share, stats, (state, logits, targets)
    return choice, chosen_stats, chosen


def settled_from(epochs: int) -> int:
    """The first epoch that may be kept: the one by whose end the cosine schedule has halved the
    learning rate.

    Right after the blocks unfreeze, the held-out accuracy swings by up to 24 points from epoch to
    epoch (often down to chance and back); choosing among those swings on a few dozen held-out
    images keeps lucky ones. Measured over 6 seeds on three real sets, choosing among the settled
    epochs did as well or slightly better (bench/RESULTS.md, "Which epoch to keep").
    """
    return math.ceil(epochs / 2)


def head_only_better(head_only: EpochStats, tuned: EpochStats) -> bool:
    """Whether the head-only model beats the fine-tuned one on the held-out images on both counts:
    higher accuracy and lower loss.

    Accuracy alone is too coarse on a few dozen images, and the head-only model's own score is
    optimistic (its epoch was chosen on those same images), so a plain "higher accuracy wins" kept
    it where fine-tuning had helped; a fine-tuned model that is worse on both counts has gone
    wrong (bench/RESULTS.md, "Which epoch to keep").
    """
    return head_only.acc > tuned.acc and head_only.loss < tuned.loss


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
