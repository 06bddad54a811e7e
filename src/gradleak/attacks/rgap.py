"""R-GAP: the closed-form recursive gradient attack (Zhu & Blaschko, ICLR 2021).

From the output layer back to the input, each layer's input is the least-squares solution of
its weight constraints ``W_i x_i = z_i`` (``z_i`` is the layer's pre-activation, recovered from
the input of the layer above through the invertible activation) stacked on its gradient
constraints ``K_i x_i = dL/dW_i`` (``K_i`` built from the backward signal
``k_i = (W_{i+1}^T k_{i+1}) * sigma_i'(z_i)``). See :mod:`gradleak.analysis.system` for how the
systems are solved without dense matrices and :mod:`.rgap_head` for the first step.

The output layer can admit several readings (label, scale). Each is followed to the input;
the one whose reconstruction reproduces the observed update best is kept, and among readings
that reproduce it equally well (the paper's twin data) the one that best fits the data box the
attacker knows (least mass outside it, then the widest range inside it). When that choice
was needed, the result says so.

A batch of B > 1 yields one image: the linear combination of the batch that the paper's
Appendix D describes, returned in every slot.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from ..errors import GradleakError
from ..fl.protocol import Protocol, compute_update
from ..observation import Observation
from ..analysis.chain import ChainLayer, layer_chain
from ..analysis.system import adjoint_weight_map, solve_layer
from .base import Attack, Progress, Reconstruction, register_attack
from .labels import recover_labels
from .objective import flatten
from .optimisation import PRECISIONS, data_box
from .rgap_head import Branch, head_branches

TIE_RTOL = 1e-3  # readings whose update fit is within this of the best (or below it) are ties


@dataclass
class RGAPConfig:
    precision: str = "float64"  # "float64": exact to ~1e-12 on CNN6; "float32": ~2x faster, far less exact
    refine: int = 2  # iterative-refinement steps per layer (recover what the normal equations lose)


@dataclass
class Candidate:
    branch: Branch
    x: torch.Tensor  # flat input
    fit: float  # relative distance of its update to the observed one
    outside: float  # mean squared distance to the data box, relative to the box width
    extent: float  # range of values inside the box
    residuals: list[float]
    full_rank: list[bool]


def observed_gradients(observation: Observation, names: list[str], dtype: torch.dtype) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The update as a gradient; a fedavg weight change is undone by its learning rate."""
    notes: list[str] = []
    grads = {n: observation.update[n].to(dtype) for n in names}
    protocol = observation.protocol
    if protocol.update_kind == "weight_delta":
        steps = protocol.local_steps(observation.num_samples)
        grads = {n: -g / (protocol.lr * steps) for n, g in grads.items()}
        if steps > 1:
            notes.append(f"fedavg with {steps} local steps: the update is only approximately a gradient")
    return grads, notes


class RecursiveSolver:
    """Follows one output-layer reading down to the input."""

    def __init__(self, chain: list[ChainLayer], grads: dict[str, torch.Tensor], names: dict[int, str], refine: int) -> None:
        self.chain, self.grads, self.names, self.refine = chain, grads, names, refine

    def grad_of(self, layer: ChainLayer, which: str) -> torch.Tensor | None:
        p = getattr(layer.module, which)
        return None if p is None else self.grads[self.names[id(p)]]

    def run(self, branch: Branch) -> tuple[torch.Tensor, list[float], list[bool]]:
        x, k = branch.x, branch.k
        residuals, ranks = [], []
        for below, above in zip(reversed(self.chain[:-1]), reversed(self.chain[1:])):
            act = below.activation
            z = act.inverse(x)
            k = adjoint_weight_map(above, k) * act.derivative(z)
            bias = below.module.bias
            if bias is not None:
                z = z - bias.to(z.dtype).repeat_interleave(below.out_size // below.out_channels)
            solution = solve_layer(below, k=k, z=z, grad=self.grad_of(below, "weight"), refine=self.refine)
            x = solution.x
            residuals.append(solution.residual)
            ranks.append(solution.full_rank)
        return x, residuals, ranks


@register_attack("rgap", description="R-GAP: closed-form recursive attack, layer by layer (Zhu & Blaschko 2021)")
class RGAP(Attack):
    Config = RGAPConfig

    def __init__(self, config: RGAPConfig) -> None:
        if config.precision not in PRECISIONS:
            raise GradleakError(f"unknown precision {config.precision!r}; choose one of: {', '.join(PRECISIONS)}")
        if config.refine < 0:
            raise GradleakError(f"refine must be >= 0, got {config.refine}")
        super().__init__(config)

    def total_iterations(self) -> int:
        return 1

    def candidates(self, observation: Observation, *, device: torch.device) -> tuple[list[Candidate], list[str], torch.nn.Module]:
        """Every output-layer reading followed to the input, with the attacker's scores."""
        dtype = PRECISIONS[self.config.precision]
        model = observation.build_model(device=device).to(dtype)
        chain = layer_chain(model, input_shape=observation.input_shape)
        names = {id(p): n for n, p in model.named_parameters()}
        grads, notes = observed_gradients(observation, list(names.values()), dtype)
        for n, g in grads.items():
            grads[n] = g.to(device)
        solver = RecursiveSolver(chain, grads, names, self.config.refine)
        head = chain[-1].module
        labels = self._label_hypotheses(observation, model, chain)
        branches = head_branches(
            weight=head.weight.detach(), bias=None if head.bias is None else head.bias.detach(),
            grad_w=solver.grad_of(chain[-1], "weight"), grad_b=solver.grad_of(chain[-1], "bias"), labels=labels,
        )
        if not branches:
            raise GradleakError("R-GAP found no consistent reading of the output layer (zero or non-rank-one update)")
        lo, hi = data_box(observation)
        target = flatten([grads[n] for n in names.values()])
        out = []
        for branch in branches:
            with torch.enable_grad():
                x, residuals, ranks = solver.run(branch)
            out.append(self._score(observation, model, branch, x, residuals, ranks, target, lo, hi))
        return out, notes, model

    def reconstruct(
        self, observation: Observation, *, generator: torch.Generator, device: torch.device, progress: Progress
    ) -> Reconstruction:
        cands, notes, model = self.candidates(observation, device=device)
        best, ambiguous = choose(cands)
        chosen = cands[best]
        b = observation.num_samples
        inputs = chosen.x.reshape(1, *observation.input_shape).expand(b, *observation.input_shape)
        if b == 1:
            labels, method = torch.tensor([chosen.branch.label]), "rgap-branch"
        else:
            estimate = recover_labels(observation, model=model.float(), generator=generator)
            labels, method = estimate.labels, estimate.method
            notes.append(
                f"batch of {b}: R-GAP recovers one linear combination of the batch (paper, Appendix D); "
                "the same image fills every slot"
            )
        if ambiguous:
            others = ", ".join(f"label {c.branch.label} mu={c.branch.mu:.4g}" for i, c in enumerate(cands)
                               if i != best and c.fit <= tie_level(cands))
            notes.append(
                f"ambiguous: readings ({others}) reproduce the update as well as the chosen one "
                f"(label {chosen.branch.label}, mu={chosen.branch.mu:.4g}): twin data; chosen by the data box"
            )
        if not all(chosen.full_rank):
            notes.append("rank-deficient layer(s): the minimum-norm solution was used there")
        notes.append("layer residuals (output to input): " + ", ".join(f"{r:.2e}" for r in chosen.residuals))
        progress(1)
        return Reconstruction(
            inputs=inputs.detach().cpu().float().contiguous(),
            labels=labels.cpu().long(),
            attack=self.name,
            config=dataclasses.asdict(self.config),
            label_method=method,
            loss_trace=[chosen.fit],
            restart_losses=[c.fit for c in cands],
            chosen_restart=best,
            iterations=1,
            notes=notes,
        )

    @staticmethod
    def _label_hypotheses(observation: Observation, model: torch.nn.Module, chain: list[ChainLayer]) -> list[int]:
        if observation.labels is not None and observation.num_samples == 1:
            return [int(observation.labels[0])]
        classes = chain[-1].module.out_features
        return [0, 1] if classes == 1 else list(range(classes))

    @staticmethod
    def _score(observation, model, branch, x, residuals, ranks, target, lo, hi) -> Candidate:
        inputs = x.reshape(1, *observation.input_shape).detach()
        label = torch.tensor([branch.label], device=inputs.device)
        with torch.enable_grad():
            # fedavg updates were already turned into a gradient, so compare gradients
            update = compute_update(model, inputs=inputs, labels=label, protocol=Protocol(name="fedsgd"))
        got = flatten([u.detach() for u in update.values()])
        fit = float((got - target).norm() / target.norm().clamp(min=1e-300))
        width = max(hi - lo, 1e-12)
        outside = float((((lo - x).clamp(min=0) + (x - hi).clamp(min=0)) / width).pow(2).mean())
        inside = x.clamp(lo, hi)
        extent = float(inside.max() - inside.min()) / width
        return Candidate(branch, x.detach(), fit, outside, extent, residuals, ranks)


def tie_level(cands: list[Candidate]) -> float:
    best = min(c.fit for c in cands)
    return best * (1 + TIE_RTOL) + TIE_RTOL * 1e-3


def choose(cands: list[Candidate]) -> tuple[int, bool]:
    """Index of the chosen reading and whether another one fitted the update as well."""
    level = tie_level(cands)
    ties = [i for i, c in enumerate(cands) if c.fit <= level]
    best = min(ties, key=lambda i: (round(cands[i].outside, 6), -cands[i].extent))
    return best, len(ties) > 1


def rgap_candidates(observation: Observation, *, precision: str = "float64", device: str = "cpu") -> list[Candidate]:
    """All readings R-GAP considers, scored: what :func:`twin_data` and H-GAP build on."""
    attack = RGAP(RGAPConfig(precision=precision))
    return attack.candidates(observation, device=torch.device(device))[0]
