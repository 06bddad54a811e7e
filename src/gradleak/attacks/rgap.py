"""R-GAP: the closed-form recursive gradient attack (Zhu & Blaschko, ICLR 2021).

From the output layer back to the input, each layer's input is the least-squares solution of
its weight constraints ``W_i x_i = z_i`` stacked on its gradient constraints
``K_i x_i = dL/dW_i`` (:mod:`.rgap_solver`), solved matrix-free (:mod:`gradleak.analysis.system`).

Batch size 1 is exact wherever every layer's system is full rank (``gradleak rank``). For a
batch of B > 1 the accumulated gradient mixes the samples and R-GAP returns one image, a
linear combination of the batch (the paper's Appendix D); it fills every slot and the result
says so.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from ..analysis.system import SolveSettings
from ..errors import GradleakError
from ..observation import Observation
from .base import Attack, Progress, Reconstruction, register_attack
from .labels import recover_labels
from .optimisation import PRECISIONS, data_box
from .rgap_solver import Inversion, invert


@dataclass
class RGAPConfig:
    precision: str = "float64"  # "float64": exact to ~1e-10 on CNN6; "float32": faster, ~1e-3 MSE
    tol: float = 1e-13  # relative residual at which a layer's CG solve stops (float32: floored at ~6e-6)
    max_iter: int = 300  # CG iterations per layer before the dense Cholesky / pseudo-inverse
    prune: float = 10.0  # drop an output-layer reading whose layer residual exceeds this x the best

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise GradleakError(f"unknown precision {self.precision!r}; choose one of: {', '.join(PRECISIONS)}")
        if not self.tol > 0 or self.max_iter < 1 or not self.prune >= 1:
            raise GradleakError(f"need tol > 0, max_iter >= 1 and prune >= 1; got {self.tol}, {self.max_iter}, {self.prune}")


def observed_gradients(observation: Observation) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The update as a gradient (in its own precision); a fedavg weight change is undone by its learning rate."""
    notes: list[str] = []
    grads = dict(observation.update)
    protocol = observation.protocol
    if protocol.update_kind == "weight_delta":
        steps = protocol.local_steps(observation.num_samples)
        grads = {n: -g / (protocol.lr * steps) for n, g in grads.items()}
        if steps > 1:
            notes.append(f"fedavg with {steps} local steps: the update is only approximately a gradient")
    return grads, notes


def run_rgap(observation: Observation, config: RGAPConfig, *, device: torch.device) -> tuple[Inversion, list[str]]:
    """R-GAP on an observation: every reading, the chosen one, and notes for the result."""
    dtype = PRECISIONS[config.precision]
    model = observation.build_model(device=device).to(dtype)
    grads, notes = observed_gradients(observation)
    grads = {n: g.to(device) for n, g in grads.items()}
    labels = None
    if observation.labels is not None and observation.num_samples == 1:
        labels = [int(observation.labels[0])]
    settings = SolveSettings(tol=config.tol, max_iter=config.max_iter)
    with torch.no_grad():
        inversion = invert(
            model, gradients=grads, input_shape=observation.input_shape, labels=labels, box=data_box(observation),
            settings=settings, prune=config.prune, relaxed=observation.num_samples > 1,
        )
    best = inversion.best
    if inversion.ambiguous:
        others = ", ".join(f"label {r.branch.label} mu={r.branch.mu:.4g}" for i, r in enumerate(inversion.readings)
                           if i != inversion.chosen)
        notes.append(
            f"ambiguous: other readings ({others}) reproduce the update as well as the chosen one "
            f"(label {best.branch.label}, mu={best.branch.mu:.4g}) - twin data; chosen by the data box"
        )
    if not best.full_rank:
        notes.append("rank-deficient layer(s): the minimum-norm (pseudo-inverse) solution was used there")
    notes.append("layer residuals (output to input): " + ", ".join(f"{r:.1e}" for r in best.residuals))
    notes.append("layer solvers (output to input): " + ", ".join(best.methods))
    return inversion, notes


@register_attack("rgap", description="R-GAP: closed-form recursive attack, layer by layer (Zhu & Blaschko 2021)")
class RGAP(Attack):
    Config = RGAPConfig

    def total_iterations(self) -> int:
        return 1

    def reconstruct(
        self, observation: Observation, *, generator: torch.Generator, device: torch.device, progress: Progress
    ) -> Reconstruction:
        inversion, notes = run_rgap(observation, self.config, device=device)
        best, b = inversion.best, observation.num_samples
        inputs = best.x.reshape(1, *observation.input_shape).expand(b, *observation.input_shape)
        if b == 1:
            labels, method = torch.tensor([best.branch.label]), "rgap-head"
        else:
            model = observation.build_model(device=device)
            estimate = recover_labels(observation, model=model, generator=generator)
            labels, method = estimate.labels, estimate.method
            notes.insert(0, f"batch of {b}: R-GAP recovers one linear combination of the batch (paper, Appendix D); "
                            "the same image fills every slot")
        progress(1)
        fits = [r.fit for r in inversion.readings]
        return Reconstruction(
            inputs=inputs.detach().cpu().float().contiguous(),
            labels=labels.cpu().long(),
            attack=self.name,
            config=dataclasses.asdict(self.config),
            label_method=method,
            loss_trace=[best.fit],
            restart_losses=fits,
            restart_traces=[[f] for f in fits],
            chosen_restart=inversion.chosen,
            iterations=1,
            notes=notes,
        )
