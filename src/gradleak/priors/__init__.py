"""Generator priors for the generative-prior attacks (GI-z, GIAS, GIML): architectures,
training on the attacker's own split, and safetensors + JSON checkpoints."""

from .checkpoint import load_prior, read_prior_info, save_prior
from .data import AttackerData, attacker_data, hold_out
from .generators import GENERATORS, Generator, GeneratorSpec, build_generator
from .quality import frechet_distance, nearest_neighbour_rmse, sample_quality
from .train import PriorTrainConfig, train_prior

__all__ = [
    "AttackerData", "GENERATORS", "Generator", "GeneratorSpec", "PriorTrainConfig", "attacker_data", "build_generator",
    "frechet_distance", "hold_out", "load_prior", "nearest_neighbour_rmse", "read_prior_info", "sample_quality",
    "save_prior", "train_prior",
]
