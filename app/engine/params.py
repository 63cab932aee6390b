"""The training parameters: one model shared by the web form, the REST API, the CLI and metadata.json."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Mode(StrEnum):
    TRANSFER = "transfer"
    FINETUNE = "finetune"


@dataclass(frozen=True)
class ModeInfo:
    """How a mode is named and explained everywhere: the page, the CLI, the comparison's log."""

    name: str
    run_title: str
    help: str


MODE_INFO: dict[Mode, ModeInfo] = {
    Mode.TRANSFER: ModeInfo(
        name="Transfer learning",
        run_title="transfer learning (frozen backbone, new head)",
        help="Frozen pretrained backbone, new classifier head: fast, needs few images, rarely overfits.",
    ),
    Mode.FINETUNE: ModeInfo(
        name="Fine-tuning",
        run_title="fine-tuning (last blocks retrained too)",
        help="Head first, then the last backbone blocks retrained with a smaller learning rate: "
        "adapts to images unlike everyday photos, needs more images and time, overfits more easily.",
    ),
}

# Epochs are cheap in transfer mode (the head trains on cached embeddings) and dear in fine-tuning.
DEFAULT_EPOCHS: dict[Mode, int] = {Mode.TRANSFER: 40, Mode.FINETUNE: 15}
# The registry's names (app.engine.backbones.BACKBONES, which imports torch), for the schema's enum.
BACKBONE_NAMES = ("mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small")


class TrainParams(BaseModel):
    """What a user may choose for one training run; every field has a range and a description."""

    model_config = ConfigDict(extra="forbid", use_enum_values=False)

    mode: Mode = Field(
        Mode.TRANSFER,
        description="transfer: frozen backbone, new head. finetune: also retrain the last backbone blocks.",
    )
    backbone: str = Field(
        "mobilenet_v2",
        description="Pretrained network used as the feature extractor.",
        json_schema_extra={"enum": list(BACKBONE_NAMES)},
    )
    epochs: int | None = Field(
        None,
        ge=1,
        le=500,
        description="Passes over the training images (default: 40 for transfer, 15 for fine-tuning); "
        "in transfer learning, the most that cross-validation may choose.",
    )
    batch_size: int = Field(32, ge=1, le=512, description="Images per optimisation step.")
    learning_rate: float = Field(
        1e-3,
        gt=0,
        le=1.0,
        description="Learning rate of the head; the backbone uses 0.3 times it when fine-tuning.",
    )
    unfreeze_blocks: int | None = Field(
        None,
        ge=1,
        le=20,
        description="Fine-tuning only: how many blocks, counted from the end, are retrained (default per backbone).",
    )
    seed: int = Field(
        0,
        ge=0,
        le=2**31 - 1,
        description="Seed for the split, the initial weights and the batch order.",
    )
    val_split: float = Field(
        0.15,
        ge=0.05,
        le=0.5,
        description="Fraction of each class held out for validation when no validation folder is given.",
    )
    int8: bool = Field(
        False,
        description="Also export an int8-quantised model.int8.onnx (about 3x smaller, for edge devices); its accuracy change is measured and recorded.",
    )

    @model_validator(mode="after")
    def _known_backbone_and_blocks(self) -> TrainParams:
        from app.engine.backbones import BACKBONES

        if self.backbone not in BACKBONES:
            names = ", ".join(BACKBONES)
            shown = self.backbone.encode("utf-8", "backslashreplace").decode()  # no lone surrogates
            raise ValueError(f"Unknown backbone '{shown}'. Choose one of: {names}.")
        blocks = len(BACKBONES[self.backbone].block_names)
        if self.unfreeze_blocks is not None and self.unfreeze_blocks > blocks:
            raise ValueError(
                f"unfreeze_blocks is {self.unfreeze_blocks}, but {self.backbone} has {blocks} blocks. "
                f"Choose 1 to {blocks}."
            )
        return self

    @property
    def resolved_epochs(self) -> int:
        return self.epochs if self.epochs is not None else DEFAULT_EPOCHS[self.mode]

    @property
    def resolved_unfreeze_blocks(self) -> int:
        from app.engine.backbones import BACKBONES

        spec = BACKBONES[self.backbone]
        wanted = (
            self.unfreeze_blocks
            if self.unfreeze_blocks is not None
            else spec.default_unfreeze_blocks
        )
        return min(
            wanted, len(spec.block_names)
        )  # only a default can exceed it; a choice is checked

    def resolved(self) -> dict[str, Any]:
        """The parameters as actually used, defaults filled in (what metadata.json records)."""
        data = self.model_dump(mode="json")
        data["epochs"] = self.resolved_epochs
        data["unfreeze_blocks"] = (
            self.resolved_unfreeze_blocks if self.mode is Mode.FINETUNE else None
        )
        return data
