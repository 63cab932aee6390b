"""Fine-tuning against transfer learning on real images far from ImageNet, plus digits and flowers.

    .venv/bin/python bench/bench_finetune_far.py [--sets bccd-cells deeppcb-defects pneumonia-xray digits flowers]
        [--seeds 0 1] [--per-class 100] [--eval-per-class 60] [--epochs 15] [--variant NAME ...]
        [--threads N] [--trace [--trace-mix WEIGHT ...]]

For each set and seed, both modes train through `train_to_zip` (the CLI's code path) on the set's
`train` folder only (the trainer holds out its own 15 % to choose epochs), and each exported ONNX
model is scored by `evaluate_zip` on the set's untouched `val` folder, which no choice sees. The
far sets are built outside the repository by `bench/far_datasets.py` (default /work/data-far;
--sets also takes breast-ultrasound and brain-mri, which it builds but the default leaves out);
digits are scikit-learn's, as the tests make them (its unseen rest is the untouched folder);
flowers are /work/shared/datasets/flowers-dev (everyday photos: fine-tuning must not lose there).

--per-class and --eval-per-class cap the images per class (a seeded choice, the same for both
modes) to fit a small CPU budget. --variant runs fine-tuning with one experimental change that
the product does not make (see VARIANTS); transfer is unchanged by every variant except no-crop.
The fine-tuning validation curve (held-out accuracy per epoch, epoch 0 being the head-only model)
is printed for each run, so a collapse after unfreezing shows, and so is the job's log line on
what it kept (an epoch, an average with the head-only weights, or the transfer model). --trace also scores every
fine-tuning epoch on the untouched images, so that rules for keeping an epoch can be compared
afterwards on the same runs; --trace-mix adds, for each settled epoch, the weights averaged with
the head-only model's (about doubling a run's time).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from unittest import mock

import torch
from PIL import Image, ImageOps

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.engine import finetune, training  # noqa: E402 - the repository root is added just above
from app.engine.backbones import get_spec  # noqa: E402
from app.engine.context import RunContext  # noqa: E402
from app.engine.crossval import cross_validate  # noqa: E402
from app.engine.dataset import Sample, from_folder, scan_folder  # noqa: E402
from app.engine.embeddings import make_embedder  # noqa: E402
from app.engine.events import Epoch, Log  # noqa: E402
from app.engine.head import Embedded, evaluate_logits, train_head_for  # noqa: E402
from app.engine.model_zip import evaluate_zip  # noqa: E402
from app.engine.params import Mode, TrainParams  # noqa: E402
from app.engine.pipeline import train_to_zip  # noqa: E402
from app.engine.preprocess import Preprocessing, resize_and_crop  # noqa: E402
from tests.conftest import make_digits_dataset  # noqa: E402

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
FLOWERS = Path("/work/shared/datasets/flowers-dev")


@contextmanager
def unchanged() -> Iterator[None]:
    yield


@contextmanager
def backbone_lr(factor: float) -> Iterator[None]:
    """The unfrozen blocks' learning rate as `factor` times the head's (the product uses 0.3)."""
    with mock.patch.object(finetune, "BACKBONE_LR_FACTOR", factor):
        yield


@contextmanager
def block_lr_decay(decay: float) -> Iterator[None]:
    """Each unfrozen block learns at `decay` times the rate of the block above it (the product: 1.0)."""
    with mock.patch.object(finetune, "BLOCK_LR_DECAY", decay):
        yield


@contextmanager
def batchnorm_updated(n_blocks: int = 8) -> Iterator[None]:
    """BatchNorm of the last `n_blocks` (the unfrozen ones by default) in training mode: their
    statistics follow the new images; the frozen prefix keeps ImageNet's."""
    saved = finetune.keep_batchnorm_frozen

    def only_prefix(module: torch.nn.Module) -> None:
        saved(module)
        for block in list(module.extractor.features.children())[-n_blocks:]:  # type: ignore[union-attr]
            for layer in block.modules():
                if isinstance(layer, torch.nn.modules.batchnorm._BatchNorm):
                    layer.train()

    finetune.keep_batchnorm_frozen = only_prefix
    try:
        yield
    finally:
        finetune.keep_batchnorm_frozen = saved


@contextmanager
def no_centre_crop() -> Iterator[None]:
    """Resize the shorter side to the crop size (224), so a square image loses nothing at its edges.
    The exported metadata follows, so training, export and evaluation agree."""
    spec = get_spec("mobilenet_v2")
    saved = spec.preprocessing
    spec.__dict__["preprocessing"] = Preprocessing(
        saved.crop_size, saved.crop_size, saved.mean, saved.std
    )
    try:
        yield
    finally:
        spec.__dict__["preprocessing"] = saved


@contextmanager
def flip_only() -> Iterator[None]:
    """Training images prepared as validation's (resize, centre crop), then mirrored half the time:
    no random crop that could cut a small defect away, no colour jitter."""

    def centre_and_flip(image: Image.Image, prep: Preprocessing, rng: random.Random) -> Image.Image:
        out = resize_and_crop(image, prep)
        return ImageOps.mirror(out) if rng.random() < 0.5 else out

    with mock.patch.object(finetune, "augment", centre_and_flip):
        yield


@contextmanager
def long_warmup(share: float = 0.3) -> Iterator[None]:
    """Warm-up over `share` of all fine-tuning steps instead of one epoch (6 steps on 170 images)."""
    saved = finetune.warmup_cosine

    def longer(
        optimiser: torch.optim.Optimizer, total_steps: int, warmup_steps: int
    ) -> torch.optim.lr_scheduler.LambdaLR:
        return saved(optimiser, total_steps, max(warmup_steps, round(total_steps * share)))

    with mock.patch.object(finetune, "warmup_cosine", longer):
        yield


@contextmanager
def slow_head(factor: float = 0.3) -> Iterator[None]:
    """The already-trained head at `factor` times its learning rate while the blocks fine-tune."""
    saved = finetune.FinetuneRunner.__init__

    def init(self: finetune.FinetuneRunner, *args: object, **kwargs: object) -> None:
        saved(self, *args, **kwargs)  # type: ignore[arg-type]
        self.optimiser.param_groups[1]["lr"] *= factor

    finetune.FinetuneRunner.__init__ = init  # type: ignore[method-assign]
    try:
        yield
    finally:
        finetune.FinetuneRunner.__init__ = saved  # type: ignore[method-assign]


@contextmanager
def precise_batchnorm(n_blocks: int = 8, max_images: int = 512) -> Iterator[None]:
    """BatchNorm of the unfrozen blocks in training mode while they train (so a weight change is
    normalised at once and cannot knock the network off), and before every validation their running
    statistics recomputed exactly over up to `max_images` training images, un-augmented (the frozen
    prefix's outputs for them are computed once): the statistics the exported model will use."""
    saved_loader, saved_predict = finetune.FinetuneLoader, finetune.FinetuneRunner.predict
    training: list[list[Sample]] = []

    class RecordingLoader(saved_loader):  # type: ignore[misc, valid-type]
        def __post_init__(self) -> None:
            if self.train:
                training.append(self.samples)

    frozen_train: dict[int, list[torch.Tensor]] = {}
    calls: dict[int, int] = {}

    @torch.no_grad()
    def recompute(runner: finetune.FinetuneRunner, like: finetune.FinetuneLoader) -> None:
        key = id(runner)
        if key not in frozen_train:
            samples = training[-1]
            if len(samples) > max_images:
                samples = random.Random(0).sample(samples, max_images)
            loader = saved_loader(samples, like.prep, like.batch_size, train=False)
            frozen_train[key] = [
                runner.prefix(runner._to_device(x, y)[0])
                for x, y in loader.batches(torch.Generator().manual_seed(0))
            ]
        norms = [
            m
            for m in runner.suffix.modules()
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
        ]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # a cumulative average over the whole pass
            m.train()
        for frozen in frozen_train[key]:
            runner.suffix(frozen)
        for m in norms:
            m.eval()

    def predict(
        runner: finetune.FinetuneRunner, loader: finetune.FinetuneLoader, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        calls[id(runner)] = calls.get(id(runner), 0) + 1
        # The first validation is the head-only model's, with ImageNet's statistics: left as it is.
        if not loader.train and training and calls[id(runner)] > 1:
            recompute(runner, loader)
        return saved_predict(runner, loader, generator)

    finetune.FinetuneLoader = RecordingLoader  # type: ignore[misc]
    finetune.FinetuneRunner.predict = predict  # type: ignore[method-assign]
    try:
        with batchnorm_updated(n_blocks):
            yield
    finally:
        finetune.FinetuneLoader = saved_loader  # type: ignore[misc]
        finetune.FinetuneRunner.predict = saved_predict  # type: ignore[method-assign]


@contextmanager
def weight_average(half_life_epochs: float = 1.0) -> Iterator[None]:
    """An exponential moving average of the trained weights (unfrozen blocks and head) is what each
    epoch validates, keeps and exports; training goes on from the raw weights. BatchNorm statistics
    are frozen, so averaging the weights averages the model's eval-mode layers exactly."""
    saved_init = finetune.FinetuneRunner.__init__
    saved_step = finetune.FinetuneRunner.train_step
    saved_predict = finetune.FinetuneRunner.predict
    state: dict[int, dict[str, object]] = {}

    def trained(runner: finetune.FinetuneRunner) -> list[torch.nn.Parameter]:
        return [p for group in runner.optimiser.param_groups for p in group["params"]]

    def init(self: finetune.FinetuneRunner, *args: object, **kwargs: object) -> None:
        saved_init(self, *args, **kwargs)  # type: ignore[arg-type]
        state[id(self)] = {"avg": None, "raw": None, "steps_per_epoch": None}

    def restore_raw(runner: finetune.FinetuneRunner) -> None:
        s = state[id(runner)]
        if s["raw"] is not None:
            with torch.no_grad():
                for p, raw in zip(trained(runner), s["raw"], strict=True):  # type: ignore[call-overload]
                    p.copy_(raw)
            s["raw"] = None

    def train_step(
        self: finetune.FinetuneRunner, x: torch.Tensor, y: torch.Tensor, epoch: int, params: object
    ) -> tuple[float, int]:
        restore_raw(self)
        s = state[id(self)]
        if s["avg"] is None:  # the average starts from the head-only model
            s["avg"] = [p.detach().clone() for p in trained(self)]
        out = saved_step(self, x, y, epoch, params)  # type: ignore[arg-type]
        steps = s["steps_per_epoch"] or max(1, math.ceil(TRAIN_SIZE[0] / params.batch_size))  # type: ignore[attr-defined]
        s["steps_per_epoch"] = steps
        decay = 0.5 ** (1 / (half_life_epochs * steps))
        with torch.no_grad():
            for a, p in zip(s["avg"], trained(self), strict=True):  # type: ignore[call-overload]
                a.mul_(decay).add_(p.detach(), alpha=1 - decay)
        return out

    def predict(
        self: finetune.FinetuneRunner, loader: finetune.FinetuneLoader, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        s = state[id(self)]
        if s["avg"] is not None and s["raw"] is None:
            with torch.no_grad():
                s["raw"] = [p.detach().clone() for p in trained(self)]
                for p, a in zip(trained(self), s["avg"], strict=True):  # type: ignore[call-overload]
                    p.copy_(a)
        return saved_predict(self, loader, generator)

    saved_loader = finetune.FinetuneLoader

    class SizedLoader(saved_loader):  # type: ignore[misc, valid-type]
        def __post_init__(self) -> None:
            if self.train:
                TRAIN_SIZE[0] = len(self.samples)

    finetune.FinetuneRunner.__init__ = init  # type: ignore[method-assign]
    finetune.FinetuneRunner.train_step = train_step  # type: ignore[method-assign]
    finetune.FinetuneRunner.predict = predict  # type: ignore[method-assign]
    finetune.FinetuneLoader = SizedLoader  # type: ignore[misc]
    try:
        yield
    finally:
        finetune.FinetuneRunner.__init__ = saved_init  # type: ignore[method-assign]
        finetune.FinetuneRunner.train_step = saved_step  # type: ignore[method-assign]
        finetune.FinetuneRunner.predict = saved_predict  # type: ignore[method-assign]
        finetune.FinetuneLoader = saved_loader  # type: ignore[misc]


TRAIN_SIZE = [0]


@contextmanager
def cross_validated_head() -> Iterator[None]:
    """The head that fine-tuning starts from chooses its epochs by 5-fold cross-validation on the
    training part's embeddings (as transfer learning does) instead of on the held-out images, so
    the head-only model's held-out score, which each fine-tuned epoch must beat, is not inflated
    by having been chosen on those same images."""
    saved = training.train_head

    def cross_validated(
        head: torch.nn.Module,
        emb: Embedded,
        params: TrainParams,
        epochs: int,
        stage: str,
        on_event: Callable[[object], None],
        should_stop: Callable[[], bool],
        generator: torch.Generator,
    ) -> list[dict[str, object]]:
        cv = cross_validate(
            emb.x_train,
            emb.y_train,
            head[-1].out_features,  # type: ignore[index]
            params,
            epochs,
            on_event,
            should_stop,
            generator,
        )
        train_head_for(
            head, emb.x_train, emb.y_train, params, cv.epochs, on_event, should_stop, generator
        )
        return cv.history

    training.train_head = cross_validated  # type: ignore[assignment]
    try:
        yield
    finally:
        training.train_head = saved  # type: ignore[assignment]


# name -> (how fine-tuning's parameters change, what is patched around both runs)
VARIANTS: dict[str, tuple[dict[str, object], Callable[[], object]]] = {
    "default": ({}, unchanged),
    "lr-0.1": ({}, lambda: backbone_lr(0.1)),
    "lr-1.0": ({}, lambda: backbone_lr(1.0)),
    "bn-updated": ({}, batchnorm_updated),
    "no-crop": ({}, no_centre_crop),
    "flip-only": ({}, flip_only),
    "all-blocks": ({"unfreeze_blocks": 19}, unchanged),
    "4-blocks": ({"unfreeze_blocks": 4}, unchanged),
    "8-blocks": ({"unfreeze_blocks": 8}, unchanged),  # the default until 2026-12-03
    "decay-0.8": ({}, lambda: block_lr_decay(0.8)),
    "decay-0.9": ({}, lambda: block_lr_decay(0.9)),
    "long-warmup": ({}, long_warmup),
    "slow-head": ({}, slow_head),
    "precise-bn": ({}, precise_batchnorm),
    "ema": ({}, weight_average),
    "cv-head": ({}, cross_validated_head),
}


class UntouchedTrace:
    """Scores every fine-tuning epoch on the untouched images too (bench only: no choice sees it),
    so that rules for choosing the epoch can be compared afterwards on the same runs."""

    def __init__(self) -> None:
        self.samples: list[Sample] | None = None
        self.rows: list[
            tuple[float, float, float]
        ] = []  # (held-out loss, held-out acc, untouched acc)
        self._frozen: list[tuple[torch.Tensor, torch.Tensor]] | None = None
        # With --trace-mix: per epoch, {weight of the fine-tuned model: (held-out loss, held-out
        # acc, untouched acc)} for its weights averaged with the head-only model's.
        self.mix_weights: tuple[float, ...] = ()
        self.mix_from = 1  # the first epoch whose averaged weights are scored
        self.mixes: list[dict[float, tuple[float, float, float]]] = []
        self._head_only: dict[str, torch.Tensor] | None = None

    def start(self, folder: Path | None, labels: list[str]) -> None:
        self.rows, self._frozen, self.mixes, self._head_only = [], None, [], None
        self.samples = None
        if folder is not None:
            found, items = scan_folder(folder)
            assert found == labels, (found, labels)
            index = {name: i for i, name in enumerate(labels)}
            self.samples = [Sample(path, index[name]) for path, name in items]

    @contextmanager
    def patched(self) -> Iterator[None]:
        saved = finetune.FinetuneRunner.predict
        trace = self

        def predict(
            runner: finetune.FinetuneRunner,
            loader: finetune.FinetuneLoader,
            generator: torch.Generator,
        ) -> tuple[torch.Tensor, torch.Tensor]:
            logits, targets = saved(runner, loader, generator)
            if trace.samples is not None and not loader.train:
                stats = evaluate_logits(logits, targets)
                trace.rows.append(
                    (stats.loss, stats.acc, trace._untouched_accuracy(runner, loader))
                )
                if trace.mix_weights:
                    trace.mixes.append(trace._mixed(runner, loader, saved))
            return logits, targets

        finetune.FinetuneRunner.predict = predict  # type: ignore[method-assign]
        try:
            yield
        finally:
            finetune.FinetuneRunner.predict = saved  # type: ignore[method-assign]

    @torch.no_grad()
    def _mixed(
        self,
        runner: finetune.FinetuneRunner,
        loader: finetune.FinetuneLoader,
        predict: Callable[..., tuple[torch.Tensor, torch.Tensor]],
    ) -> dict[float, tuple[float, float, float]]:
        """Score the weights averaged with the head-only model's (weight-space ensembling, as in
        WiSE-FT); the first call, before fine-tuning, records the head-only weights."""
        if self._head_only is None:
            self._head_only = copy.deepcopy(runner.model.state_dict())
        if len(self.rows) - 1 < self.mix_from:
            return {}
        current = copy.deepcopy(runner.model.state_dict())
        scores = {}
        for weight in self.mix_weights:
            runner.model.load_state_dict(
                {
                    name: torch.lerp(self._head_only[name], value, weight)
                    if value.is_floating_point()
                    else value
                    for name, value in current.items()
                }
            )
            stats = evaluate_logits(*predict(runner, loader, torch.Generator().manual_seed(0)))
            scores[weight] = (stats.loss, stats.acc, self._untouched_accuracy(runner, loader))
        runner.model.load_state_dict(current)
        return scores

    @torch.no_grad()
    def _untouched_accuracy(
        self, runner: finetune.FinetuneRunner, like: finetune.FinetuneLoader
    ) -> float:
        assert self.samples is not None
        if self._frozen is None:
            loader = finetune.FinetuneLoader(self.samples, like.prep, like.batch_size, train=False)
            # Its own generator: the run's must not be consumed by this extra pass.
            self._frozen = [
                (runner.prefix(runner._to_device(x, y)[0]), y)
                for x, y in loader.batches(torch.Generator().manual_seed(0))
            ]
        correct = sum(
            int((runner._suffix_and_head(frozen).cpu().argmax(1) == y).sum())
            for frozen, y in self._frozen
        )
        return correct / sum(len(y) for _, y in self._frozen)


TRACE = UntouchedTrace()
TRACING = False


@dataclass
class Run:
    accuracy: float
    seconds: float
    curve: list[float] = field(default_factory=list)  # held-out accuracy per fine-tuning epoch
    train_curve: list[float] = field(default_factory=list)  # augmented training accuracy per epoch
    kept: str = ""  # fine-tuning's log line on what it kept


def images_of(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def seeded_cap(files: list[Path], per_class: int | None, seed: int, label: str) -> list[Path]:
    """At most `per_class` of one class's images (sorted), the same choice for the same seed in
    every benchmark that caps a set."""
    if per_class is None or len(files) <= per_class:
        return files
    return sorted(random.Random(f"{seed}-{label}").sample(sorted(files), per_class))


def capped_copy(source: Path, target: Path, per_class: int | None, seed: int) -> Path:
    """A class-per-folder tree of links to at most `per_class` images a class (seeded choice)."""
    for class_dir in sorted(d for d in source.iterdir() if d.is_dir()):
        files = seeded_cap(images_of(class_dir), per_class, seed, class_dir.name)
        (target / class_dir.name).mkdir(parents=True, exist_ok=True)
        for path in files:
            (target / class_dir.name / path.name).symlink_to(path.resolve())
    return target


def set_folders(
    name: str, data: Path, work: Path, seed: int, per_class: int | None
) -> tuple[Path, Path]:
    """(train, untouched) folders of one set, before capping."""
    if name == "digits":
        train, _, unseen = make_digits_dataset(
            # Not f"digits-{seed}": that is the run's own folder, which capped_copy creates.
            work / f"digits-{seed}-source",
            per_class or 60,
            0,
            seed=seed,
        )
        return train, unseen
    root = FLOWERS if name == "flowers" else data / name
    return root / "train", root / "val"


def train_and_score(
    train: Path, untouched: Path, params: TrainParams, cache: Path, out: Path
) -> Run:
    curve: list[float] = []
    train_curve: list[float] = []

    kept: list[str] = []

    def note(event: object) -> None:
        if isinstance(event, Epoch) and event.stage == "finetune":
            curve.append(event.val_acc)
            train_curve.append(event.train_acc)
        if isinstance(event, Log) and (
            "Kept fine-tuning" in event.message or "transfer-learning model" in event.message
        ):
            kept.append(event.message)

    started = time.perf_counter()
    data = from_folder(train, seed=params.seed)
    TRACE.start(untouched if params.mode is Mode.FINETUNE and TRACING else None, data.labels)
    metadata = train_to_zip(
        data,
        params,
        out,
        RunContext(make_embedder(params.backbone, cache), on_event=note),
    )
    seconds = time.perf_counter() - started
    if params.mode is Mode.FINETUNE:
        curve.insert(0, head_only_accuracy(metadata))
    run = Run(evaluate_zip(out, untouched)["accuracy"], seconds, curve, train_curve, " ".join(kept))
    if TRACE.rows:
        print(
            "trace "
            + json.dumps(
                {
                    "train": str(train),
                    "final_untouched": run.accuracy,
                    "rows": TRACE.rows,
                    "mixes": [{str(w): v for w, v in m.items()} for m in TRACE.mixes],
                }
            ),
            flush=True,
        )
    return run


def head_only_accuracy(metadata: dict) -> float:
    """The head-only model's held-out accuracy: the head stage keeps its best epoch."""
    heads = [h["val_acc"] for h in metadata["metrics"]["history"] if h.get("stage") == "head"]
    return float(max(heads)) if heads else float("nan")


def spread(values: list[float]) -> str:
    mean = statistics.mean(values)
    half = (max(values) - min(values)) / 2
    return f"{mean:.3f} ± {half:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sets",
        nargs="+",
        default=["bccd-cells", "deeppcb-defects", "pneumonia-xray", "digits", "flowers"],
        help="far_datasets.py's sets (also breast-ultrasound, brain-mri), digits, flowers",
    )
    parser.add_argument("--data", type=Path, default=Path("/work/data-far"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--per-class", type=int, default=100, help="training images a class (cap)")
    parser.add_argument(
        "--eval-per-class", type=int, default=None, help="untouched images a class (cap)"
    )
    parser.add_argument(
        "--epochs", type=int, default=None, help="fine-tuning epochs (default: the product's)"
    )
    parser.add_argument(
        "--variant",
        nargs="+",
        choices=sorted(VARIANTS),
        default=["default"],
        help="one or more experimental changes, applied together",
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's)"
    )
    parser.add_argument(
        "--trace",
        action="store_true",
        help="also score every fine-tuning epoch on the untouched images (printed as 'trace' lines)",
    )
    parser.add_argument(
        "--trace-mix",
        type=float,
        nargs="+",
        default=[],
        metavar="WEIGHT",
        help="with --trace: also score each settled epoch's weights averaged with the head-only "
        "model's, the fine-tuned ones at each WEIGHT (0-1)",
    )
    args = parser.parse_args()
    TRACE.mix_weights = tuple(args.trace_mix)
    TRACE.mix_from = finetune.settled_from(
        TrainParams(mode=Mode.FINETUNE, epochs=args.epochs).resolved_epochs
    )
    if args.threads:
        torch.set_num_threads(args.threads)
    changes: dict[str, object] = {}
    patches = ExitStack()
    for name in args.variant:
        more, patch = VARIANTS[name]
        changes.update(more)
        patches.enter_context(patch())  # type: ignore[arg-type]
    global TRACING
    TRACING = args.trace
    if args.trace:
        patches.enter_context(TRACE.patched())
    # Each run leaves links, caches and two model zips here: gone when the benchmark ends.
    work = Path(tempfile.mkdtemp(prefix="teachbox-far-"))
    patches.callback(shutil.rmtree, work, ignore_errors=True)
    print(
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"variant {'+'.join(args.variant)}, {args.per_class} a class to train, seeds {args.seeds}"
    )
    print(
        "| set | seed | n train / untouched | transfer | fine-tune | gap | s transfer / fine-tune | held-out curve (epoch 0 = head only) "
        "| training curve | kept |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    summary: dict[str, tuple[list[float], list[float]]] = {}
    with patches:
        for name in args.sets:
            for seed in args.seeds:
                source_train, source_val = set_folders(name, args.data, work, seed, args.per_class)
                run_dir = work / f"{name}-{seed}"
                train = capped_copy(source_train, run_dir / "train", args.per_class, seed)
                untouched = capped_copy(
                    source_val, run_dir / "untouched", args.eval_per_class, seed
                )
                cache = run_dir / "cache"
                transfer = train_and_score(
                    train, untouched, TrainParams(seed=seed), cache, run_dir / "t.zip"
                )
                tuned_params = TrainParams(
                    mode=Mode.FINETUNE, seed=seed, epochs=args.epochs, **changes
                )  # type: ignore[arg-type]
                tuned = train_and_score(train, untouched, tuned_params, cache, run_dir / "f.zip")
                accs = summary.setdefault(name, ([], []))
                accs[0].append(transfer.accuracy)
                accs[1].append(tuned.accuracy)
                n_train = sum(len(images_of(d)) for d in train.iterdir())
                n_eval = sum(len(images_of(d)) for d in untouched.iterdir())
                print(
                    f"| {name} | {seed} | {n_train} / {n_eval} | {transfer.accuracy:.3f} | {tuned.accuracy:.3f} "
                    f"| {(tuned.accuracy - transfer.accuracy) * 100:+.1f} | {transfer.seconds:.0f} / {tuned.seconds:.0f} "
                    f"| {' '.join(f'{a:.2f}' for a in tuned.curve)} | {' '.join(f'{a:.2f}' for a in tuned.train_curve)} | {tuned.kept} |",
                    flush=True,
                )
    print("\n| set | transfer (mean ± half-range) | fine-tune | gap, points |")
    print("|---|---|---|---|")
    for name, (transfer_accs, tuned_accs) in summary.items():
        gaps = [(f - t) * 100 for t, f in zip(transfer_accs, tuned_accs, strict=True)]
        print(
            f"| {name} | {spread(transfer_accs)} | {spread(tuned_accs)} | "
            f"{statistics.mean(gaps):+.1f} ({', '.join(f'{g:+.1f}' for g in gaps)}) |"
        )


if __name__ == "__main__":
    main()
