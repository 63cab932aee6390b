"""Both training modes on small real image files: events, cancellation, divergence, reproducibility."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from pydantic import BaseModel

from app.engine.backbones import build_backbone, get_spec
from app.engine.context import RunContext
from app.engine.dataset import from_folder
from app.engine.embeddings import Embedder, make_embedder
from app.engine.errors import TeachboxError, TrainingCancelled
from app.engine.events import Cancelled, Done, Epoch, Log, Progress, Started
from app.engine.finetune import (
    FINETUNE_MEMORY_FORMAT,
    FinetuneLoader,
    FinetuneRunner,
    average_with_head_only,
    averaged_weights,
    block_param_groups,
    freeze_for_finetune,
    head_only_better,
    settled_from,
    warmup_cosine,
)
from app.engine.head import EpochStats, check_finite, evaluate_logits
from app.engine.images import model_input
from app.engine.network import Classifier, make_head
from app.engine.params import Mode, TrainParams
from app.engine.pipeline import train_to_zip
from app.engine.training import fit, transfer_params
from tests.conftest import make_colour_dataset

pytestmark = pytest.mark.weights


def collect() -> tuple[list[BaseModel], callable]:
    events: list[BaseModel] = []
    return events, events.append


def test_transfer_learns_colours_and_reports_every_metric(
    session_colours: Path, embedder: Embedder
) -> None:
    events, sink = collect()
    params = TrainParams(epochs=10, seed=1)
    result = fit(from_folder(session_colours, seed=1), params, RunContext(embedder, on_event=sink))
    assert result.metrics.val_accuracy == 1.0
    assert result.metrics.per_class == {"blue": 1.0, "red": 1.0}
    # Every image is predicted out of fold, so the confusion matrix counts all twenty.
    assert result.metrics.confusion_matrix == [[10, 0], [0, 10]]
    assert result.metrics.labels == ["blue", "red"]
    assert result.metrics.epochs_run == 10
    assert set(result.history[0]) >= {"train_loss", "train_acc", "val_loss", "val_acc"}
    assert isinstance(events[0], Started) and events[0].stages == [
        "embed",
        "head",
        "refit",
        "export",
    ]
    assert any(isinstance(e, Progress) and e.stage == "embed" for e in events)
    assert [e.epoch for e in events if isinstance(e, Epoch)] == list(range(1, 11))


def test_same_seed_same_result(session_colours: Path, embedder: Embedder) -> None:
    params = TrainParams(epochs=5, seed=11)
    runs = [
        fit(from_folder(session_colours, seed=11), params, RunContext(embedder)) for _ in range(2)
    ]
    assert runs[0].history == [
        {**h, "seconds": runs[0].history[i]["seconds"]} for i, h in enumerate(runs[1].history)
    ]


def test_same_seed_same_model_whether_the_cache_is_cold_or_warm(
    session_colours: Path, tmp_path: Path
) -> None:
    """A cold cache builds the backbone (drawing random numbers) before the head is made; a warm
    one does not. Random numbers drawn elsewhere in between must not matter either."""
    params = TrainParams(epochs=5, seed=4)
    data = from_folder(session_colours, seed=4)
    runs = []
    for _ in range(2):  # the first run fills the cache, the second reads it
        torch.rand(7)  # someone else draws from torch's global generator meanwhile
        runs.append(fit(data, params, RunContext(make_embedder("mobilenet_v2", tmp_path))))
    cold, warm = runs
    assert [{**h, "seconds": 0} for h in cold.history] == [
        {**h, "seconds": 0} for h in warm.history
    ]
    for name, value in cold.model.head.state_dict().items():
        assert torch.equal(value, warm.model.head.state_dict()[name]), name


def test_finetune_unfreezes_the_last_blocks(session_colours: Path, embedder: Embedder) -> None:
    events, sink = collect()
    params = TrainParams(mode=Mode.FINETUNE, epochs=1, unfreeze_blocks=2, batch_size=8, seed=2)
    before = fit(
        from_folder(session_colours, seed=2), TrainParams(epochs=1, seed=2), RunContext(embedder)
    )
    result = fit(from_folder(session_colours, seed=2), params, RunContext(embedder, on_event=sink))
    stages = [e.stage for e in events if isinstance(e, Epoch)]
    assert stages.count("finetune") == 1 and "head" in stages
    assert any(
        isinstance(e, Progress) and e.stage == "finetune" and e.eta_s is not None for e in events
    )
    assert result.metrics.val_accuracy == 1.0
    # Keys read "features.<block>.…": only the two unfrozen blocks may differ, and the kept epoch
    # (the only one, so settled by definition) did change them.
    changed = {
        name.split(".")[1]
        for name, value in result.model.extractor.state_dict().items()
        if "num_batches" not in name and not value.equal(before.model.extractor.state_dict()[name])
    }
    assert changed == {"17", "18"}, changed


def test_each_unfrozen_block_learns_at_the_decay_times_the_rate_of_the_block_above() -> None:
    spec = get_spec("mobilenet_v2")
    backbone = build_backbone("mobilenet_v2")
    _, suffix = freeze_for_finetune(backbone, spec.block_names, 3)
    groups = block_param_groups(suffix, top_lr=1e-3, decay=0.5)
    assert [g["lr"] for g in groups] == pytest.approx([0.25e-3, 0.5e-3, 1e-3])
    grouped = [id(p) for g in groups for p in g["params"]]
    assert sorted(grouped) == sorted(id(p) for p in suffix.parameters()), "each weight once"


@pytest.mark.parametrize("epochs", [1, 2, 3, 15, 40])
def test_the_settled_epochs_start_where_the_schedule_has_halved_the_learning_rate(
    epochs: int,
) -> None:
    steps_per_epoch = 4
    optimiser = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    schedule = warmup_cosine(optimiser, epochs * steps_per_epoch, steps_per_epoch)
    rate_after = []  # the learning rate in force when each epoch has ended
    for _ in range(epochs):
        for _ in range(steps_per_epoch):
            optimiser.step()
            schedule.step()
        rate_after.append(optimiser.param_groups[0]["lr"])
    first = settled_from(epochs)
    assert 1 <= first <= epochs
    assert rate_after[first - 1] <= 0.5 + 1e-9
    assert first == 1 or rate_after[first - 2] > 0.5


def test_the_head_only_model_is_kept_only_when_fine_tuning_is_worse_on_both_counts() -> None:
    head_only = EpochStats(loss=0.30, acc=0.90)
    assert head_only_better(head_only, EpochStats(loss=0.66, acc=0.77))  # near chance by its loss
    # The head-only score is optimistic: a higher accuracy alone, or a lower loss alone, does not win.
    assert not head_only_better(head_only, EpochStats(loss=0.25, acc=0.87))
    assert not head_only_better(head_only, EpochStats(loss=0.40, acc=0.93))
    assert not head_only_better(head_only, EpochStats(loss=0.40, acc=0.90))


def test_fine_tuning_that_wrecks_the_backbone_ships_the_transfer_model(
    session_colours: Path, embedder: Embedder
) -> None:
    events, sink = collect()
    # A learning rate a hundred times the default sends the unfrozen blocks' loss into the hundreds.
    params = TrainParams(
        mode=Mode.FINETUNE, epochs=2, unfreeze_blocks=19, batch_size=8, seed=2, learning_rate=0.1
    )
    data = from_folder(session_colours, seed=2)
    result = fit(data, params, RunContext(embedder, on_event=sink))
    tuned = [e for e in events if isinstance(e, Epoch) and e.stage == "finetune"]
    assert max(e.val_acc for e in tuned) <= 0.5, "the premise: fine-tuning went wrong"
    warnings = [e.message for e in events if isinstance(e, Log) and e.level == "warning"]
    assert any("Shipping the transfer-learning model instead" in w for w in warnings), warnings
    # The very model a transfer run with these parameters ships: trained on every image, its
    # estimate out of fold; the failed fine-tuning stays in the history.
    alone = fit(data, transfer_params(params), RunContext(embedder))
    assert result.metrics.n_train == len(data.labelled) == alone.metrics.n_train
    assert result.metrics.estimate == alone.metrics.estimate
    assert result.metrics.cross_validation == alone.metrics.cross_validation is not None
    for name, value in result.model.head.state_dict().items():
        assert torch.equal(value, alone.model.head.state_dict()[name]), name
    assert [h["stage"] for h in result.history].count("finetune") == 2
    pretrained = build_backbone("mobilenet_v2").state_dict()
    for name, value in result.model.extractor.state_dict().items():
        assert torch.equal(value, pretrained[name]), name


def test_averaged_weights_run_from_the_head_only_to_the_fine_tuned_ones() -> None:
    head_only = {"w": torch.zeros(3), "bn.num_batches_tracked": torch.tensor(0)}
    tuned = {"w": torch.tensor([4.0, -8.0, 2.0]), "bn.num_batches_tracked": torch.tensor(7)}
    assert averaged_weights(head_only, tuned, 0.0)["w"].tolist() == [0.0, 0.0, 0.0]
    assert averaged_weights(head_only, tuned, 0.25)["w"].tolist() == [1.0, -2.0, 0.5]
    assert averaged_weights(head_only, tuned, 1.0)["w"].tolist() == [4.0, -8.0, 2.0]
    assert averaged_weights(head_only, tuned, 0.5)["bn.num_batches_tracked"].item() == 7


def average_setup(
    session_colours: Path,
) -> tuple[FinetuneRunner, FinetuneLoader, dict[str, torch.Tensor]]:
    spec = get_spec("mobilenet_v2")
    data = from_folder(session_colours, seed=5)
    head = make_head(1280, len(data.labels), torch.Generator().manual_seed(0))
    model = Classifier(build_backbone("mobilenet_v2").eval(), head)
    prefix, suffix = freeze_for_finetune(model.extractor, spec.block_names, 2)
    runner = FinetuneRunner(
        model, prefix, suffix, torch.device("cpu"), TrainParams(mode=Mode.FINETUNE)
    )
    loader = FinetuneLoader(data.val, spec.preprocessing, batch_size=4, train=False)
    return runner, loader, copy.deepcopy(model.state_dict())


def score(
    runner: FinetuneRunner, loader: FinetuneLoader, state: dict[str, torch.Tensor]
) -> tuple[EpochStats, torch.Tensor]:
    runner.model.load_state_dict(state)
    logits, targets = runner.predict(loader, torch.Generator().manual_seed(0))
    return evaluate_logits(logits, targets), logits


def test_an_average_with_the_head_only_weights_is_kept_where_it_scores_better(
    session_colours: Path,
) -> None:
    runner, loader, start = average_setup(session_colours)
    # A fine-tuned model whose last block has drifted far: far worse than the head-only one.
    drifted = copy.deepcopy(start)
    for name, value in drifted.items():
        if name.startswith("extractor.features.18") and value.dim() == 4:  # its convolution
            value.add_(torch.randn(value.shape, generator=torch.Generator().manual_seed(1)))
    kept_stats, kept_logits = score(runner, loader, drifted)
    head_only_stats, _ = score(runner, loader, start)
    assert kept_stats.loss > head_only_stats.loss, "the premise: the drifted model is worse"

    share, stats, (state, logits, targets) = average_with_head_only(
        runner,
        loader,
        torch.Generator().manual_seed(0),
        start,
        (drifted, kept_logits, torch.tensor([s.label for s in loader.samples])),
        kept_stats,
    )
    assert share < 1.0
    assert (stats.acc, -stats.loss) > (kept_stats.acc, -kept_stats.loss)
    for name, value in averaged_weights(start, drifted, share).items():
        assert torch.equal(state[name], value), name
    again, again_logits = score(runner, loader, state)
    assert again == stats and torch.equal(again_logits, logits)
    assert targets.tolist() == [s.label for s in loader.samples]


def test_the_fine_tuned_weights_stay_when_no_average_scores_strictly_better(
    session_colours: Path,
) -> None:
    runner, loader, start = average_setup(session_colours)
    stats, logits = score(runner, loader, start)
    kept = (start, logits, torch.tensor([s.label for s in loader.samples]))
    # Every average of a model with itself is that model: a tie, which the fine-tuned one wins.
    share, chosen_stats, chosen = average_with_head_only(
        runner, loader, torch.Generator().manual_seed(0), start, kept, stats
    )
    assert share == 1.0 and chosen_stats == stats and chosen is kept


def test_finetune_validation_is_float32_and_reuses_the_frozen_prefix(session_colours: Path) -> None:
    spec = get_spec("mobilenet_v2")
    data = from_folder(session_colours, seed=5)
    model = Classifier(build_backbone("mobilenet_v2").eval(), make_head(1280, len(data.labels)))
    model.to(memory_format=FINETUNE_MEMORY_FORMAT)
    prefix, suffix = freeze_for_finetune(model.extractor, spec.block_names, 8)
    runner = FinetuneRunner(
        model, prefix, suffix, torch.device("cpu"), TrainParams(mode=Mode.FINETUNE)
    )
    loader = FinetuneLoader(data.val, spec.preprocessing, batch_size=4, train=False)
    generator = torch.Generator().manual_seed(0)

    first, targets = runner.predict(loader, generator)
    assert runner._val_prefix is not None and len(runner._val_prefix) == len(loader)
    for name, parameter in suffix.named_parameters():  # as if an epoch had trained the suffix
        parameter.data.add_(0.01 * torch.randn_like(parameter), alpha=1 + len(name) % 2)
    again, _ = runner.predict(loader, generator)
    inputs = torch.stack(
        [torch.from_numpy(model_input(s.path, spec.preprocessing)) for s in data.val]
    )
    with torch.no_grad():
        exported_way = model(inputs.contiguous(memory_format=FINETUNE_MEMORY_FORMAT))

    assert targets.tolist() == [s.label for s in data.val]
    assert not torch.allclose(first, again), "the trained blocks must run every time"
    torch.testing.assert_close(torch.softmax(again, 1), exported_way, atol=1e-5, rtol=0)


def test_cancellation_stops_and_emits_cancelled(
    session_colours: Path, embedder: Embedder, tmp_path: Path
) -> None:
    events, sink = collect()
    seen_epochs = []

    def stop_after_two_epochs() -> bool:
        seen_epochs.extend(
            e.epoch for e in events if isinstance(e, Epoch) and e.epoch not in seen_epochs
        )
        return len(seen_epochs) >= 2

    with pytest.raises(TrainingCancelled):
        train_to_zip(
            from_folder(session_colours),
            TrainParams(epochs=50),
            tmp_path / "m.zip",
            RunContext(embedder, on_event=sink, should_stop=stop_after_two_epochs),
        )
    assert isinstance(events[-1], Cancelled)
    assert sum(isinstance(e, Epoch) for e in events) == 2
    assert not (tmp_path / "m.zip").exists()


def test_non_finite_loss_is_a_clear_failure() -> None:
    # Adam on a linear head cannot reach a non-finite loss within the allowed learning rates (each
    # step moves a weight by at most the rate), so the guard itself is exercised with real tensors.
    params = TrainParams(learning_rate=0.5)
    check_finite(torch.tensor(2.5), epoch=1, params=params)
    for bad in (float("nan"), float("inf")):
        with pytest.raises(
            TeachboxError,
            match=r"Training diverged: the loss became (nan|inf) in epoch 3. Lower the learning rate \(for example to 0.05\)",
        ):
            check_finite(torch.tensor(bad), epoch=3, params=params)


def test_pipeline_ends_with_done(trained_zip: tuple[Path, dict]) -> None:
    path, metadata = trained_zip
    assert path.is_file()
    assert metadata["metrics"]["val_accuracy"] == 1.0
    assert metadata["parity"]["passed"] is True


def test_done_event_carries_the_metrics(
    session_colours: Path, embedder: Embedder, tmp_path: Path
) -> None:
    events, sink = collect()
    train_to_zip(
        from_folder(session_colours),
        TrainParams(epochs=3),
        tmp_path / "m.zip",
        RunContext(embedder, on_event=sink),
    )
    done = events[-1]
    assert isinstance(done, Done)
    assert (
        done.metrics["confusion_matrix"]
        and done.metrics["per_class"]
        and done.metrics["parity"]["passed"]
    )


def test_files_it_cannot_read_are_reported_with_the_reason(
    tmp_path: Path, embedder: Embedder
) -> None:
    root = make_colour_dataset(tmp_path / "data", per_class=6)
    (root / "red" / "scan.tif").write_bytes(b"II*\x00" + bytes(64))
    (root / "blue" / "empty.jpg").write_bytes(b"")
    events, sink = collect()
    result = fit(from_folder(root), TrainParams(epochs=2), RunContext(embedder, on_event=sink))
    reasons = {Path(s.path).name: s.reason for s in result.metrics.skipped}
    assert sorted(reasons) == ["empty.jpg", "scan.tif"]
    assert reasons["empty.jpg"].startswith("The file is empty.")
    # The twelve readable images: each predicted out of fold, and all trained on at the end.
    assert len(result.val_paths) == result.metrics.n_train == 12
    warnings = [e.message for e in events if isinstance(e, Log) and e.level == "warning"]
    assert any(message.startswith("Skipped scan.tif: .tif is not an image") for message in warnings)


def test_the_minimum_counts_readable_images_not_files(tmp_path: Path, embedder: Embedder) -> None:
    root = make_colour_dataset(tmp_path / "data", per_class=6)
    for path in sorted((root / "blue").glob("*.jpg"))[3:]:
        path.unlink()
    (sorted((root / "blue").glob("*.jpg"))[0]).write_bytes(b"")
    with pytest.raises(TeachboxError) as caught:
        fit(from_folder(root), TrainParams(epochs=2), RunContext(embedder))
    message = caught.value.message
    assert message.startswith(
        "Each class needs at least 2 readable images to train on and 1 to validate with: 'blue' has "
    )
    assert "(unreadable: blue_000.jpg)" in message
    assert message.endswith("Remove or replace the unreadable files, or add images.")
