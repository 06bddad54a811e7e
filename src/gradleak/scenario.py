"""From a scenario description to what the server observes and what stays private.

``simulate`` is the Python API behind ``gradleak observe`` and the simulated branch of
``gradleak attack``: load data, build and optionally pre-train the global model on data
disjoint from the client's batch, run the client protocol, and split the outcome into an
:class:`Observation` (for attacks) and a :class:`GroundTruth` (for metrics only).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable

import torch

from .data import Dataset, load_dataset
from .data.schema import RECORD_KINDS, public_knowledge
from .fl.protocol import Protocol, client_round
from .fl.training import pretrain
from .models import complete_spec, create_model
from .models.base import ModelSpec
from .observation import GroundTruth, Observation


@dataclass
class Scenario:
    """One client, one round: data, model, protocol and what the client shares."""

    dataset: str = "histology"  # dataset registry name (see `gradleak datasets`)
    model: str = "lenet"  # victim model registry name (see `gradleak models`)
    batch_size: int = 1  # samples in the attacked client's batch
    protocol: Protocol = field(default_factory=Protocol)  # fedsgd / fedavg and local settings
    trained_steps: int = 0  # Adam steps of pre-training on data disjoint from the client batch
    # BatchNorm mode of the client's forward pass. Default eval (running statistics sent by the
    # server), the setting of the Inverting Gradients experiments; train mode (batch statistics)
    # is what many local-training clients do and is much harder to invert at batch size 1.
    train_mode: bool = False
    share_labels: bool = False  # client reveals its labels alongside the update
    # Client returns its BatchNorm buffers after local training (a whole state_dict, as many FedAvg
    # clients do). In train mode they reveal each layer's batch statistics (gradleak.fl.bn_stats).
    # A defense protects the update only: the returned buffers are those of undefended local training.
    share_buffers: bool = False
    seed: int = 0  # drives batch choice, model init and pre-training
    image_size: int | None = None  # resize / patch size; None = the dataset's default
    grayscale: bool = False  # convert images to one channel
    data_root: str | None = None  # where files such as MedMNIST .npz live
    model_options: dict[str, Any] = field(default_factory=dict)  # model constructor options
    defense: str | None = None  # defense spec the client applies (gradleak.defenses), None = no defense
    split: str = "train"  # data split the client's batch comes from (tuning uses the attacker's "test")

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["protocol"] = self.protocol.to_json()
        return d


def attacker_records(scenario: Scenario, data: Dataset, *, batch: torch.Tensor) -> Dataset:
    """The records behind the attacker's Gaussian prior: its own split
    (:func:`gradleak.priors.data.attacker_data`, e.g. ``test`` while clients hold ``train``). When
    the simulated client itself draws from a split other than ``train`` (the attacker simulating
    rounds on its own data, as ``gradleak tune`` does), that split minus the client's batch."""
    if data.kind not in RECORD_KINDS:
        return data  # images: no prior statistics
    if scenario.split != "train":
        return data.without(batch)
    from .priors.data import attacker_data  # priors.data imports data; keep the import local

    return attacker_data(scenario.dataset, data_root=scenario.data_root).data


SHUFFLE_SALT = 0x5EED  # the client's epoch permutations: a stream apart from the batch choice's


def client_shuffle_seed(seed: int) -> int:
    """The seed of the client's private epoch permutations (``Protocol.shuffle``) for scenario ``seed``."""
    return int(seed) ^ SHUFFLE_SALT


def simulate(
    scenario: Scenario, *, progress: Callable[[int], None] = lambda _n: None,
    exclude: torch.Tensor | None = None, craft: Callable[[ModelSpec, Any], tuple[ModelSpec, Any]] | None = None,
) -> tuple[Observation, GroundTruth]:
    """Run the client's round; returns (what the server sees, the private batch).

    ``progress`` is called once per pre-training step (``scenario.trained_steps`` in all).
    ``exclude``: dataset indices the client never holds (the attacker's own public data, see
    :mod:`gradleak.priors.data`); the batch is drawn from the rest, indices stay dataset-wide.
    ``craft``: a malicious server's ``(spec, model) -> (spec, model)`` applied to the global model
    (after any pre-training) before it is sent; the client trains on whatever it receives
    (:mod:`gradleak.malicious`).
    """
    defense = None
    if scenario.defense is not None:  # may change batch size, protocol and model (see Defense)
        from .defenses import parse_defense

        defense = parse_defense(scenario.defense)
        scenario = replace(scenario, batch_size=defense.batch_size(scenario.batch_size),
                           protocol=defense.protocol(scenario.protocol))
    data = load_dataset(
        scenario.dataset, data_root=scenario.data_root, image_size=scenario.image_size, grayscale=scenario.grayscale,
        split=scenario.split,
    )
    generator = torch.Generator().manual_seed(scenario.seed)
    if exclude is None:
        inputs, labels, indices = data.sample_batch(scenario.batch_size, generator=generator)
    else:
        allowed = torch.ones(len(data), dtype=torch.bool)
        allowed[exclude] = False
        inputs, labels, idx = data.without(exclude).sample_batch(scenario.batch_size, generator=generator)
        indices = torch.nonzero(allowed).flatten()[idx]
    spec = complete_spec(ModelSpec(
        name=scenario.model, input_shape=data.input_shape, num_classes=data.num_classes,
        options=dict(scenario.model_options),
    ))
    spec = defense.model_spec(spec) if defense is not None else spec
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(scenario.seed)
        model = create_model(spec)
    if defense is not None:
        defense.check_model(model)
    if scenario.trained_steps > 0:
        pretrain(model, data=data.without(indices), steps=scenario.trained_steps, generator=generator,
                 progress=progress)
    if craft is not None:
        spec, model = craft(spec, model)
    model.train(scenario.train_mode)
    state = {k: v.detach().clone() for k, v in model.named_parameters()}
    buffers = {k: v.detach().clone() for k, v in model.named_buffers()}
    returned = None
    shuffle_seed = client_shuffle_seed(scenario.seed)  # private to the client: not in the observation
    if defense is None or scenario.share_buffers:
        update, returned = client_round(model, inputs=inputs, labels=labels, protocol=scenario.protocol,
                                        shuffle_seed=shuffle_seed)
    if defense is not None:
        update = defense.shared_update(model, inputs=inputs, labels=labels, protocol=scenario.protocol,
                                       generator=generator, shuffle_seed=shuffle_seed)
    observation = Observation(
        model=spec,
        parameters=state,
        buffers=buffers,
        train_mode=scenario.train_mode,
        protocol=scenario.protocol,
        update=update,
        num_samples=scenario.batch_size,
        labels=labels.clone() if scenario.share_labels else None,
        defense=defense.describe() if defense is not None else None,
        updated_buffers=returned if scenario.share_buffers else None,
        data={"dataset": data.name, "kind": data.kind, "min": 0.0, "max": float(data.data_range),
              "class_names": list(data.class_names), **public_knowledge(data, own=attacker_records(scenario, data, batch=indices))},
    )
    return observation, GroundTruth(inputs=inputs, labels=labels, indices=indices)
