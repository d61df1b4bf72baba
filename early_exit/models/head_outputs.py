from dataclasses import dataclass
from typing import Iterable, List, Optional

import torch
from allennlp.common.tqdm import Tqdm
from allennlp.data import Instance

from early_exit.models.early_exit_classifier import EarlyExitClassifier
from early_exit.models.model_inputs import batch_on_device, inference_switches
from early_exit.modules.exit_policies import MaxProbabilityPolicy


@dataclass
class HeadOutputs:
    """
    Every head's raw (unscaled) logits on a data set, cached once so that calibration and threshold
    sweeps cost seconds.

    # Attributes

    logits : `torch.Tensor`
        Shape `(num_instances, num_heads, num_labels)`, float32 on the CPU.
    labels : `torch.LongTensor`, optional
        Shape `(num_instances,)`, when every instance had a gold label.
    """

    logits: torch.Tensor
    labels: Optional[torch.LongTensor]

    def __len__(self) -> int:
        return self.logits.shape[0]


def collect_head_outputs(
    model: EarlyExitClassifier,
    instances: Iterable[Instance],
    batch_size: int = 32,
    description: str = "running every head",
) -> HeadOutputs:
    """
    Runs `model` with every head on every instance (no early exit, dropout off) and returns the
    heads' raw logits, with a progress bar. The model's mode, `run_all_heads` and metrics are left
    as found, and so is an adapting exit policy (`compute_budget`): every head's logits do not
    depend on the policy, so a fixed one runs instead of moving the adapting one's controller.
    """
    instances = list(instances)
    logits: List[torch.Tensor] = []
    labels: List[torch.Tensor] = []
    has_labels = True
    settings = model.inference_settings().replace(run_all_heads=True)
    if settings.exit_policy.adapts():
        settings = settings.replace(exit_policy=MaxProbabilityPolicy(1.0))
    with inference_switches(model), torch.inference_mode():
        for start in Tqdm.tqdm(range(0, len(instances), batch_size), desc=description):
            tensors = batch_on_device(model, instances[start : start + batch_size])
            output = model(tokens=tensors["tokens"], settings=settings)
            logits.append(output["head_logits"].float().cpu())  # (batch, num_heads, labels)
            if "label" in tensors:
                labels.append(tensors["label"].long().cpu())
            else:
                has_labels = False
    if not logits:
        raise ValueError("no instances to run the heads on")
    return HeadOutputs(
        logits=torch.cat(logits, dim=0),
        labels=torch.cat(labels, dim=0) if has_labels and labels else None,
    )
