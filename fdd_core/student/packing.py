"""Training batches of a causal student without padding waste: the examples of one batch packed into rows.

A random batch of question -> program examples pads every row to its longest example (~35-40% pad tokens on
the demo's data). PackingCollator takes the same batch (same examples, same order of batches: the sampler is
untouched) and lays the examples end to end into as few rows as fit the longest one (first-fit decreasing),
with position ids restarting at 0 for each example. transformers reads restarting position ids with no
attention mask as packed sequences and masks attention block-causally (masking_utils), so each example sees
only itself and the loss is the padded batch's loss; use_cache=False is passed because a forward that builds
a cache skips that detection. A row's unused tail is one more block of pad tokens labelled IGNORE_INDEX.
"""

from __future__ import annotations

from typing import Any

from .prompting import IGNORE_INDEX


class PackingCollator:
    """Collate tokenised causal examples ({input_ids, labels}) into packed rows (pack=False: one padded row per
    example, as DataCollatorForSeq2Seq does); counts the token slots and the real tokens as it goes."""

    def __init__(self, pad_token_id: int, *, pack: bool = True) -> None:
        self.pad_token_id = pad_token_id
        self.pack = pack
        self.tokens = 0  # token slots handed to the model (real + pad), summed over batches
        self.real_tokens = 0

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        width = max(len(f["input_ids"]) for f in features)
        self.tokens += width * len(features)  # corrected below when packed
        self.real_tokens += sum(len(f["input_ids"]) for f in features)
        if not self.pack:
            return {"input_ids": torch.tensor([self._pad(f["input_ids"], width, self.pad_token_id) for f in features]),
                    "attention_mask": torch.tensor([self._pad([1] * len(f["input_ids"]), width, 0) for f in features]),
                    "labels": torch.tensor([self._pad(f["labels"], width, IGNORE_INDEX) for f in features])}
        rows = pack_rows([len(f["input_ids"]) for f in features])
        self.tokens -= width * (len(features) - len(rows))
        ids, positions, labels = [], [], []
        for row in rows:
            row_ids, row_pos, row_labels = [], [], []
            for i in row:
                n = len(features[i]["input_ids"])
                row_ids += list(features[i]["input_ids"])
                row_pos += list(range(n))
                # an example's first label is never learnt: in a packed row it would be predicted from the
                # example before it (a causal example starts with its prompt, labelled IGNORE_INDEX anyway)
                row_labels += [IGNORE_INDEX, *list(features[i]["labels"])[1:]]
            tail = width - len(row_ids)
            ids.append(row_ids + [self.pad_token_id] * tail)
            positions.append(row_pos + list(range(tail)))
            labels.append(row_labels + [IGNORE_INDEX] * tail)
        return {"input_ids": torch.tensor(ids), "position_ids": torch.tensor(positions),
                "labels": torch.tensor(labels), "use_cache": False}

    @staticmethod
    def _pad(values: list[int], width: int, fill: int) -> list[int]:
        return list(values) + [fill] * (width - len(values))

    def padding_share(self) -> float | None:
        """Share of the token slots given to the model that were padding (None before the first batch)."""
        return round(1 - self.real_tokens / self.tokens, 4) if self.tokens else None


def pack_rows(lengths: list[int]) -> list[list[int]]:
    """Indices of lengths grouped into rows no longer than the longest, first-fit decreasing."""
    width = max(lengths)
    rows: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        k = next((k for k, r in enumerate(room) if r >= lengths[i]), None)
        if k is None:
            rows.append([i])
            room.append(width - lengths[i])
        else:
            rows[k].append(i)
            room[k] -= lengths[i]
    return rows


def packs_exactly(model: Any, rows: list[dict[str, Any]], *, tolerance: float = 1e-3) -> bool:
    """Whether the model reads packed rows as separate examples: the logits of two short examples packed into
    one row match their logits alone (an architecture whose attention ignores restarting position ids fails)."""
    import torch

    pieces = [list(row["input_ids"][:8]) for row in rows[:2]]
    if len(pieces) < 2:
        return True  # one example: a batch of it never packs two together
    device = next(model.parameters()).device
    row = torch.tensor([pieces[0] + pieces[1]], device=device)
    positions = torch.tensor([list(range(len(pieces[0]))) + list(range(len(pieces[1])))], device=device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            alone = [model(input_ids=torch.tensor([p], device=device), use_cache=False).logits[0] for p in pieces]
            logits = model(input_ids=row, position_ids=positions, use_cache=False).logits[0]
    finally:
        model.train(was_training)
    together = torch.cat(alone).float()
    return bool(torch.allclose(logits.float(), together, atol=tolerance, rtol=tolerance))
