"""Victim model registry.

``build_model("cnn6", input_shape=(3, 32, 32), num_classes=2)`` or ``create_model(spec)``
for a saved :class:`ModelSpec`. Every model maps ``B x C x H x W`` to ``B x num_classes``
logits, ends in an ``nn.Linear`` (read by label recovery), sizes itself for the input
(1 or 3 channels, 8x8 to 64x64 and beyond) and supports double back-propagation and
``torch.func.functional_call``. Initialisation draws from torch's global RNG only, so seed
it (``torch.manual_seed`` inside ``torch.random.fork_rng``) for reproducible weights.
"""

from __future__ import annotations

from . import convnet, lenet, mlp, resnet, rgap_nets, tabular  # noqa: F401  (register the models)
from . import latent  # noqa: F401  (wrapper used by the latent perturbation defense; after its bases)
from . import imprint  # noqa: F401  (malicious server's crafted wrapper, see gradleak.malicious; after its bases)
from .activations import ACTIVATIONS
from .base import ModelSpec, classifier_layer, count_parameters
from .catalog import MODELS, build_model, complete_options, complete_spec, create_model, list_models

__all__ = [
    "ACTIVATIONS",
    "MODELS",
    "ModelSpec",
    "build_model",
    "classifier_layer",
    "complete_options",
    "complete_spec",
    "count_parameters",
    "create_model",
    "list_models",
]
