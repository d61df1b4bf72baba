from typing import List, Optional

import torch
from allennlp.modules import ScalarMix

from early_exit.modules.tensor_cache import VersionedCache


class ExitHead(torch.nn.Module):
    """
    One early-exit classifier, as in Schwartz et al. (2020): a learned weighted sum (allennlp's
    `ScalarMix`, softmax-normalised weights and a scale) of the pooled representations of all layers
    up to and including its exit layer, dropout, and a linear layer to the labels. A head that sees
    a single layer has no mixing weights (they would be a constant 1 and never learn). At inference
    (no gradients) the same weighted sum is one matrix product with ScalarMix's normalised weights
    cached; training and anything with gradients call ScalarMix itself.

    # Parameters

    input_dim : `int`
        Size of one pooled layer representation.
    num_mixed_layers : `int`
        How many layers' representations the head mixes (its exit layer index + 1).
    num_labels : `int`
    dropout : `float`
    extra_input_dim : `int`, optional (default = `0`)
        Size of extra features concatenated after mixing (the earlier heads' logits when the model
        uses `add_previous_layer_logits`).
    """

    def __init__(
        self,
        input_dim: int,
        num_mixed_layers: int,
        num_labels: int,
        dropout: float,
        extra_input_dim: int = 0,
    ) -> None:
        super().__init__()
        self.scalar_mix = ScalarMix(num_mixed_layers) if num_mixed_layers > 1 else None
        self.dropout = torch.nn.Dropout(dropout)
        self.classifier = torch.nn.Linear(input_dim + extra_input_dim, num_labels)
        self.num_mixed_layers = num_mixed_layers
        self._mixing_weights_cache: VersionedCache[torch.Tensor] = VersionedCache()

    def _mixing_weights(self) -> torch.Tensor:
        """
        `(num_mixed_layers,)`: ScalarMix's softmax-normalised weights times its scale, computed
        once and again only when a parameter changes (training, `load_state_dict`).
        """
        # The modules' own parameter dicts: iterating a ParameterList looks each one up by name,
        # which costs more than the rest of a head at batch size 1.
        mix = self.scalar_mix
        parameters = [*mix.scalar_parameters._parameters.values(), mix._parameters["gamma"]]

        def compute() -> torch.Tensor:
            with torch.no_grad():
                return torch.softmax(torch.cat(parameters[:-1]), dim=0) * parameters[-1]

        return self._mixing_weights_cache.get(parameters, compute)

    def forward(
        self, pooled_layers: List[torch.Tensor], extra_features: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """
        # Parameters

        pooled_layers : `List[torch.Tensor]`
            At least `num_mixed_layers` tensors of shape `(batch_size, input_dim)`, layer 0 first;
            the first `num_mixed_layers` are used.
        extra_features : `torch.Tensor`, optional
            Shape `(batch_size, extra_input_dim)`.

        # Returns

        logits : `torch.Tensor`
            Shape `(batch_size, num_labels)`.
        """
        layers = pooled_layers[: self.num_mixed_layers]
        if self.scalar_mix is None:
            mixed = layers[0]
        elif self.training or torch.is_grad_enabled():
            mixed = self.scalar_mix(layers)
        else:
            # The same weighted sum in two operations instead of ScalarMix's two per layer (at
            # batch size 1 those dominate a head's time); equal to float rounding. Stacked layer
            # first, the product reads contiguous memory.
            stacked = torch.stack(layers)  # (num_mixed_layers, batch_size, input_dim)
            weights = self._mixing_weights().unsqueeze(0)  # (1, num_mixed_layers)
            mixed = torch.mm(weights, stacked.view(len(layers), -1)).view(
                stacked.shape[1:]
            )  # (batch_size, input_dim)
        # (batch_size, input_dim); in eval mode dropout is the identity, so it is not called
        features = self.dropout(mixed) if self.dropout.training else mixed
        if extra_features is not None:
            features = torch.cat([features, extra_features], dim=-1)
        return self.classifier(features)  # (batch_size, num_labels)
