"""
The peers: an early-exit archive's full path (the encoder, every layer pooled as the heads read
them, the last head) as one plain model, run by torch (as `transformers` runs it), exported once
to ONNX for ONNX Runtime in fp32 and int8 (dynamic, per-channel weights, as the layer runner
quantizes) and for OpenVINO in fp32.
"""

import os
import warnings
from typing import Callable, Dict, List, Optional

import numpy
import torch

from bench.performance.data import indexed_tokens
from early_exit.models import EarlyExitClassifier
from early_exit.modules.layer_runners.onnx_graph import OPSET, quantize_int8

Inputs = Dict[str, torch.Tensor]  # token_ids, mask (and type_ids): (batch_size, num_tokens)


class FullPath(torch.nn.Module):
    """
    The model at full depth as a plain `transformers` forward: the Hugging Face encoder itself
    (all layers, padded), each layer pooled as the model's heads pool it, the last head.
    """

    def __init__(self, model: EarlyExitClassifier) -> None:
        super().__init__()
        if model.add_previous_layer_logits:
            raise SystemExit("error: the peers need a model without add_previous_layer_logits")
        self.transformer = model.encoder.transformer
        self.head = model.heads[-1]
        self.pooling = model.head_pooling
        self.num_layers = model.encoder.num_layers
        # Token types (sentence pairs, as SNLI's) are an input where the encoder has them.
        self.input_names = ["token_ids", "mask"] + (
            ["type_ids"] if model.encoder.has_token_types else []
        )

    def forward(
        self, token_ids: torch.Tensor, mask: torch.Tensor, type_ids: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        hidden = self.transformer(
            input_ids=token_ids,
            attention_mask=mask.long(),
            token_type_ids=type_ids,
            output_hidden_states=True,
        ).hidden_states[
            1 : self.num_layers + 1
        ]  # per layer (batch, tokens, hidden)
        if self.pooling == "mean":
            weights = mask.to(hidden[0].dtype).unsqueeze(-1)  # (batch, tokens, 1)
            pooled = [(layer * weights).sum(1) / weights.sum(1) for layer in hidden]
        elif self.pooling == "cls":
            pooled = [layer[:, 0] for layer in hidden]
        else:
            pooled = [self.transformer.pooler(layer) for layer in hidden]
        return self.head(pooled)  # (batch_size, num_labels)


def torch_peer(full: FullPath) -> Callable[[Inputs], numpy.ndarray]:
    def run(inputs: Inputs) -> numpy.ndarray:
        return full(*(inputs[name] for name in full.input_names)).numpy()

    return run


def export_full_path(full: FullPath, folder: str) -> Dict[str, str]:
    """`{"fp32": path, "int8": path}` of the full path exported to ONNX under `folder`."""
    os.makedirs(folder, exist_ok=True)
    fp32, int8 = os.path.join(folder, "full_fp32.onnx"), os.path.join(folder, "full_int8.onnx")
    example = tuple(
        torch.ones((2, 5), dtype=torch.bool if name == "mask" else torch.long)
        for name in full.input_names
    )
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            full,
            example,
            fp32,
            input_names=full.input_names,
            output_names=["logits"],
            dynamic_axes={name: {0: "batch", 1: "tokens"} for name in full.input_names},
            opset_version=OPSET,
            dynamo=False,
        )
    quantize_int8(fp32, int8)
    return {"fp32": fp32, "int8": int8}


def onnxruntime_peer(path: str, threads: int) -> Callable[[Inputs], numpy.ndarray]:
    """A session as a user makes it: default options (spinning pools) but the thread count."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    names = [graph_input.name for graph_input in session.get_inputs()]

    def run(inputs: Inputs) -> numpy.ndarray:
        return session.run(None, _feeds(names, inputs))[0]

    return run


def openvino_peer(path: str, threads: int) -> Callable[[Inputs], numpy.ndarray]:
    import openvino

    # f32 stated: on a CPU with bfloat16 support OpenVINO would otherwise infer in bfloat16.
    config = {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32"}
    compiled = openvino.Core().compile_model(path, "CPU", config)
    request = compiled.create_infer_request()
    names = [graph_input.get_any_name() for graph_input in compiled.inputs]

    def run(inputs: Inputs) -> numpy.ndarray:
        return next(iter(request.infer(_feeds(names, inputs)).values()))

    return run


def _feeds(names: List[str], inputs: Inputs) -> Dict[str, numpy.ndarray]:
    """The arrays a graph takes, by its input names (`type_ids` only where it was exported)."""
    return {name: inputs[name].numpy() for name in names}


def peer_inputs(batches: List[Dict]) -> List[Inputs]:
    """
    The model's padded batches as the peers take them: token ids, the boolean mask and the
    token type ids (zeros for single texts).
    """
    inputs = []
    for batch in batches:
        indexed = indexed_tokens(batch)
        token_ids = indexed["token_ids"]
        type_ids = indexed.get("type_ids")
        inputs.append(
            {
                "token_ids": token_ids,
                "mask": indexed["mask"].bool(),
                "type_ids": torch.zeros_like(token_ids) if type_ids is None else type_ids,
            }
        )
    return inputs
