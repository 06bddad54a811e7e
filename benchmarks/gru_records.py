"""Record inversion on a recurrent victim: the study's prior mode (Adam) vs the sequence mode (L-BFGS).

Victim: ``gru`` (hidden 32, one layer) over ihm-synthetic's 48 x 76 hourly records, first round,
FedSGD, untrained. Rows, at the same budget of update evaluations (one L-BFGS step evaluates the
update up to 25 times with its line search, so 80 L-BFGS steps <= 2000 Adam steps):

- ``prior``: the ``tabular`` attack's default mode (Gaussian start, Adam, study's best weights);
- ``sequence``: mode ``sequence`` (the prior's mean as start, L-BFGS in float64, smoothed temporal
  TV relaxed over 4 stages).

Besides the record metrics, the per-hour cosine similarity (batch mean) shows where the
reconstruction is right, and the size of the backward signal per hour (``|dL/d gate_t|``, from the
true record: context only, no attack uses it) shows why the early hours are not.

    nice -n 10 python benchmarks/gru_records.py            # seeds 0 1 2, batch 1 4 16
    python benchmarks/gru_records.py --batches 16 --seeds 0 1   # the committed batch-16 rows (CPU budget)
    python benchmarks/gru_records.py --model lstm --batches 1   # the committed LSTM rows
    python benchmarks/gru_records.py --quick               # seed 0, batch 1, short budget

Results: ``benchmarks/results/gru_records/{runs.jsonl,table.md,per_hour.png}``; the JSON-lines
cache makes the run resumable.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Any

import torch

from gradleak.attacks import create_attack
from gradleak.data.schema import RecordSchema
from gradleak.metrics.tabular import evaluate_records
from gradleak.models import create_model
from gradleak.scenario import Scenario, simulate
from _runs import append_row, load_rows  # benchmarks/_runs.py (the script's own folder is on sys.path)

OUT = Path(__file__).resolve().parent / "results" / "gru_records"
KEYS = ("similarity", "feature_accuracy", "continuous_accuracy", "categorical_accuracy", "mask_accuracy", "fmse")
BUDGET = {"prior": {"iterations": 2000}, "sequence": {"iterations": 80}}
QUICK = {"prior": {"iterations": 200}, "sequence": {"iterations": 8}}


def backward_signal(observation: Any, inputs: torch.Tensor, labels: torch.Tensor) -> list[float]:
    """Mean over the batch of ``|dL/d(input gates)_t|`` per hour (context: uses the true records)."""
    model = create_model(observation.model).double()
    model.load_state_dict({k: v.double() for k, v in observation.parameters.items()}, strict=False)
    rnn = model.rnn
    gates = (inputs.double() @ rnn.weight_ih_l0.T + rnn.bias_ih_l0).detach().requires_grad_(True)
    hidden = torch.zeros(inputs.shape[0], rnn.hidden_size, dtype=torch.float64)
    size = rnn.hidden_size
    for t in range(inputs.shape[1]):
        gh = hidden @ rnn.weight_hh_l0.T + rnn.bias_hh_l0
        gi = gates[:, t]
        r = torch.sigmoid(gi[:, :size] + gh[:, :size])
        z = torch.sigmoid(gi[:, size:2 * size] + gh[:, size:2 * size])
        n = torch.tanh(gi[:, 2 * size:] + r * gh[:, 2 * size:])
        hidden = (1 - z) * n + z * hidden
    loss = torch.nn.functional.cross_entropy(model.fc(hidden), labels)
    grad, = torch.autograd.grad(loss, gates)
    return grad.norm(dim=2).mean(0).tolist()


def run(row: str, batch: int, seed: int, quick: bool, model: str = "gru") -> dict[str, Any]:
    observation, truth = simulate(Scenario(dataset="ihm-synthetic", model=model, batch_size=batch, seed=seed))
    options = (QUICK if quick else BUDGET)[row]
    attack = create_attack("tabular", mode=row, **options)
    rec = attack.run(observation, generator=torch.Generator().manual_seed(seed))
    schema = RecordSchema.from_json(observation.data["schema"])
    m = evaluate_records(reconstruction=rec.inputs, truth=truth.inputs, schema=schema)
    order = torch.as_tensor(m["assignment"]) if "assignment" in m else torch.arange(batch)
    matched = rec.inputs.double()[order]
    per_hour = torch.nn.functional.cosine_similarity(matched, truth.inputs.double(), dim=2).mean(0).tolist()
    signal = backward_signal(observation, truth.inputs, truth.labels) if model == "gru" else None
    return {"row": row, "model": model, "batch": batch, "seed": seed, "quick": quick, **{k: m.get(k) for k in KEYS},
            "per_hour_similarity": per_hour, "backward_signal": signal,
            "gradient_loss": rec.gradient_loss, "seconds": rec.seconds, "options": options}


def _stat(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.fmean(values):.3f} ± {statistics.stdev(values):.3f}"


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| model | batch | mode | seeds | similarity | feature acc. | continuous | categorical | mask | hours 1-12 sim. | hours 37-48 sim. | s/run |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for model, batch in sorted({(r.get("model", "gru"), r["batch"]) for r in rows}, key=lambda k: (k[0] != "gru", k)):
        for mode in ("prior", "sequence"):
            cell = [r for r in rows if r.get("model", "gru") == model and r["batch"] == batch and r["row"] == mode]
            if not cell:
                continue
            early = [statistics.fmean(r["per_hour_similarity"][:12]) for r in cell]
            late = [statistics.fmean(r["per_hour_similarity"][-12:]) for r in cell]
            lines.append(f"| {model} | {batch} | {mode} | {len(cell)} | " + " | ".join(
                _stat([r[k] for r in cell]) for k in ("similarity", "feature_accuracy", "continuous_accuracy",
                                                       "categorical_accuracy", "mask_accuracy"))
                + f" | {_stat(early)} | {_stat(late)} | {statistics.fmean(r['seconds'] for r in cell):.0f} |")
    gru = [r for r in rows if r["backward_signal"] is not None]
    signal = [statistics.fmean(r["backward_signal"][t] for r in gru) for t in range(48)]
    lines += ["", "GRU backward signal |dL/d gates_t| per hour (mean over runs; hour 1, 12, 24, 36, 48): "
              + ", ".join(f"{signal[t]:.1e}" for t in (0, 11, 23, 35, 47))]
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.5))
    for mode, colour in (("prior", "tab:orange"), ("sequence", "tab:blue")):
        cell = [r for r in rows if r["row"] == mode and r["batch"] == 1 and r.get("model", "gru") == "gru"]
        if cell:
            a.plot(range(1, 49), [statistics.fmean(r["per_hour_similarity"][t] for r in cell) for t in range(48)],
                   color=colour, label=f"{mode} (batch 1)")
    a.set(xlabel="hour", ylabel="cosine similarity to the truth", title="GRU: what the attack recovers per hour")
    a.legend()
    gru = [r for r in rows if r["backward_signal"] is not None]
    b.semilogy(range(1, 49), [statistics.fmean(r["backward_signal"][t] for r in gru) for t in range(48)], color="k")
    b.set(xlabel="hour", ylabel="|dL / d gates_t|", title="How much each hour moves the update")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seeds", type=int, nargs="+", default=None)
    parser.add_argument("--batches", type=int, nargs="+", default=None)
    parser.add_argument("--model", default="gru", choices=["gru", "lstm"])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    seeds = args.seeds or ([0] if args.quick else [0, 1, 2])
    batches = args.batches or ([1] if args.quick else [1, 4, 16])
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    cache = args.out / "runs.jsonl"
    done = {(r.get("model", "gru"), r["row"], r["batch"], r["seed"], r["quick"]) for r in load_rows(cache)}
    for batch in batches:
        for seed in seeds:
            for row in ("sequence", "prior"):
                if (args.model, row, batch, seed, args.quick) not in done:
                    append_row(cache, run(row, batch, seed, args.quick, args.model))
    rows = [r for r in load_rows(cache) if r["quick"] == args.quick]
    (args.out / "table.md").write_text(
        "# Record inversion on recurrent victims (ihm-synthetic, SYNTHETIC records)\n\n" + table(rows) + "\n")
    plot(rows, args.out / "per_hour.png")
    print(table(rows))


if __name__ == "__main__":
    main()
