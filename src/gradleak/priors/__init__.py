"""Generator priors for the generative-prior attacks (GI-z, GIAS, GIML): architectures,
training on the attacker's own split, and safetensors + JSON checkpoints."""

from .checkpoint import load_prior, read_prior_info, save_prior
from .data import AttackerData, attacker_data
from .generators import GENERATORS, Generator, GeneratorSpec, build_generator
from .train import PriorTrainConfig, sample_quality, train_prior

__all__ = [
    "AttackerData", "GENERATORS", "Generator", "GeneratorSpec", "PriorTrainConfig", "attacker_data",
    "build_generator", "load_prior", "read_prior_info", "sample_quality", "save_prior", "train_prior",
]
