"""The rule that picks a mode: a paired McNemar test on the same validation images, and its sentence."""

from __future__ import annotations

import math
from collections.abc import Sequence

from pydantic import BaseModel

from app.engine.params import Mode

# A difference in validation accuracy counts only when a paired test on the same images says it is
# unlikely to be chance at this level; otherwise the cheaper transfer model is recommended.
ALPHA = 0.05


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


def mcnemar_p(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value: how likely so lopsided a split of the disagreements is by chance."""
    n = only_a + only_b
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(only_a, only_b) + 1)) / 2**n
    return min(1.0, 2 * tail)


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
