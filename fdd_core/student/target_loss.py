"""The causal loss with the LM head applied only where a label counts.

The loss of question -> program training is on the program tokens alone (~1/3 of a row), yet a causal LM's
forward projects every position onto the vocabulary. TargetLossTrainer hooks the model's output embedding so it
receives only the hidden states whose next token is labelled, and takes the cross-entropy over those: the same
loss (summed over the labelled tokens and divided by their count in the accumulated batch, as transformers does),
without the logits nobody reads. Whatever the model does to logits after its head (soft-capping, scaling) still
happens, elementwise, on the kept ones.
"""

from __future__ import annotations

from typing import Any

from .prompting import IGNORE_INDEX


def target_loss_trainer() -> type:
    """A transformers Trainer subclass (built here so transformers is imported only when training)."""
    import torch
    from transformers import Trainer

    class TargetLossTrainer(Trainer):
        loss_is_scaled_for_ga = True  # normalised over the whole accumulated batch below

        def compute_loss(self, model: Any, inputs: dict, return_outputs: bool = False,
                         num_items_in_batch: Any = None) -> Any:
            head = self.accelerator.unwrap_model(model).get_output_embeddings()
            if "labels" not in inputs or head is None:
                raise ValueError("TargetLossTrainer trains causal models with labels and an output embedding")
            inputs = dict(inputs)
            targets = inputs.pop("labels")[:, 1:]
            keep = targets != IGNORE_INDEX
            hook = head.register_forward_pre_hook(lambda _module, args: (args[0][:, :-1][keep], *args[1:]))
            try:
                outputs = model(**inputs)
            finally:
                hook.remove()
            count = num_items_in_batch
            if count is None:
                count = keep.sum() * getattr(self, "current_gradient_accumulation_steps", 1)
            loss = torch.nn.functional.cross_entropy(outputs.logits.float(), targets[keep], reduction="sum")
            loss = loss / torch.as_tensor(count, device=loss.device).clamp(min=1)
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                # num_items_in_batch counts every data-parallel process's tokens, and DDP averages the gradients over
                # the processes: scaled back as Trainer.compute_loss does, or each of N processes trains at 1/N the rate
                loss = loss * (self.accelerator.num_processes // self.get_tp_size() if self.args.n_gpu <= 1
                               else self.args.n_gpu)
            return (loss, outputs) if return_outputs else loss

    return TargetLossTrainer
