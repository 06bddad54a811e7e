"""The malicious-server threat model: crafted models, and the client-side check that catches them.

* :mod:`.craft` - the server's side: an imprint block (Robbing the Fed) whose thresholds are
  quantiles of a statistic measured on the attacker's own public data.
* :mod:`.modelfile` - a received model as a file: safetensors state dict + JSON spec, never pickle.
* :mod:`.inspect` - the client's side: look at a received model before training on it.

The read-out of the update lives with the other attacks (:mod:`gradleak.attacks.imprint`).
"""

from .craft import STATISTICS, ImprintCraft, craft_imprint, imprint_crafter, thresholds
from .inspect import InspectConfig, InspectReport, inspect_state
from .modelfile import load_model_file, save_model_file

__all__ = [
    "STATISTICS", "ImprintCraft", "InspectConfig", "InspectReport", "craft_imprint", "imprint_crafter",
    "inspect_state", "load_model_file", "save_model_file", "thresholds",
]
