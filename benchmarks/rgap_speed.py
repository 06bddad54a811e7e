"""R-GAP speed: our matrix-free solver against the public implementation's dense approach.

The public R-GAP code writes every layer's gradient constraints ``K`` and weight constraints
``W`` (padded entries as unknowns, plus one row per padded entry) as dense float32 matrices
and calls ``numpy.linalg.lstsq``. This script times both on CNN6 (untrained, the paper's
setting) for histology patches, reports the reconstruction MSE (raw, not clamped) in float64
and float32, the time of one plain forward+backward of CNN6 (a load-independent unit: the
machine is shared, so ratios are the honest numbers), the load average, and the peak
resident memory of a process that runs only our solver.

    python benchmarks/rgap_speed.py                      # 3 images at 32x32; dense reference at 8x8 and 16x16
    python benchmarks/rgap_speed.py --dense-sizes 8,16,32  # ... and once at 32x32 (long: ~1 GB matrices)
    python benchmarks/rgap_speed.py --quick              # 1 image; dense reference at 8x8 only

Results: benchmarks/results/rgap_speed.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from gradleak.analysis.chain import layer_chain
from gradleak.analysis.operators import Geometry, LayerMaps
from gradleak.attacks import create_attack
from gradleak.scenario import Scenario, simulate

RESULTS = Path(__file__).parent / "results"


def observation(size: int, seed: int):
    return simulate(Scenario(dataset="histology", model="cnn6", image_size=max(size, 28), seed=seed))


def crop(obs, truth, size: int):
    """A size x size observation: the histology patches are >= 28 px, smaller sizes are re-simulated."""
    if truth.inputs.shape[-1] == size:
        return obs, truth
    from gradleak.fl.protocol import Protocol, client_update
    from gradleak.models import build_model
    from gradleak.models.base import ModelSpec
    from gradleak.observation import GroundTruth, Observation

    x = torch.nn.functional.interpolate(truth.inputs, size=(size, size), mode="area")
    spec = ModelSpec(name="cnn6", input_shape=(3, size, size), num_classes=obs.model.num_classes)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = build_model("cnn6", input_shape=spec.input_shape, num_classes=spec.num_classes)
    update = client_update(model, inputs=x, labels=truth.labels, protocol=Protocol())
    new = Observation(model=spec, parameters={k: v.detach().clone() for k, v in model.named_parameters()}, buffers={},
                      train_mode=False, protocol=Protocol(), update=update, num_samples=1, data=obs.data)
    return new, GroundTruth(inputs=x, labels=truth.labels)


def forward_backward_seconds(obs, repeats: int = 20) -> float:
    model = obs.build_model()
    x = torch.rand((1, *obs.input_shape))
    y = torch.zeros(1, dtype=torch.long)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        torch.autograd.grad(loss, list(model.parameters()))
        best = min(best, time.perf_counter() - t)
    return best


# ------------------------------------------------------------------ the public (dense) approach
def dense_public_solve(layer, k: torch.Tensor, z: torch.Tensor, grad: torch.Tensor) -> np.ndarray:
    """One layer as the public code solves it: dense K, W and padding rows over the padded input,
    float32, numpy lstsq (SVD based); returns the unpadded input."""
    geo = Geometry.of(layer)
    c, h, w = geo.in_shape
    ph, pw = geo.padding
    padded = Geometry((c, h + 2 * ph, w + 2 * pw), geo.out_shape, geo.kernel, geo.stride, (0, 0), geo.dilation)
    eye = torch.eye(padded.n, dtype=torch.float32)
    wmat = LayerMaps(layer, k.float()).w
    u = padded.unfold(eye)  # n_pad x Ckk x P
    w_rows = (wmat @ u).reshape(padded.n, -1).T.numpy()  # |z| x n_pad
    k_rows = (k.float().reshape(geo.out_shape[0], -1) @ u.transpose(1, 2)).reshape(padded.n, -1).T.numpy()
    del u
    inner = np.zeros((c, h + 2 * ph, w + 2 * pw), dtype=bool)
    inner[:, ph:ph + h, pw:pw + w] = True
    inner = inner.reshape(-1)
    pad_rows = np.eye(padded.n, dtype=np.float32)[~inner]
    a = torch.from_numpy(np.concatenate([k_rows, w_rows, pad_rows]))
    b = torch.from_numpy(np.concatenate([grad.float().reshape(-1).numpy(), z.float().numpy(),
                                         np.zeros(pad_rows.shape[0], np.float32)]))
    # SVD-based least squares with the default cutoff, as numpy.linalg.lstsq in the public code
    # (torch's LAPACK: numpy's OpenBLAS threads fight torch's on this shared machine)
    x = torch.linalg.lstsq(a, b.reshape(-1, 1), driver="gelsd").solution.reshape(-1).numpy()
    return x[inner], a.numel() * a.element_size()


def dense_public_rgap(obs, branch) -> tuple[torch.Tensor, float, int, list[float]]:
    """The public recursion with dense solves, from the output-layer reading our attack chose."""
    model = obs.build_model().float()
    chain = layer_chain(model, input_shape=obs.input_shape)
    names = {id(p): n for n, p in model.named_parameters()}
    grads = {n: g.float() for n, g in obs.update.items()}
    start = time.perf_counter()
    x, k, biggest, per_layer = branch.x.float(), branch.k.float(), 0, []
    for below, above in zip(reversed(chain[:-1]), reversed(chain[1:])):
        t = time.perf_counter()
        z = below.activation.inverse(x)
        k = LayerMaps(above, k).weight_adjoint(k.reshape(1, -1)).reshape(-1) * below.activation.derivative(z)
        xs, nbytes = dense_public_solve(below, k, z, grads[names[id(below.module.weight)]])
        x, biggest = torch.from_numpy(xs), max(biggest, nbytes)
        per_layer.append(time.perf_counter() - t)
    return x, time.perf_counter() - start, biggest, per_layer


def dense_flops(size: int) -> float:
    """Flop model of the public approach: SVD least squares costs ~4 m n^2 per layer
    (m rows = |W| + |z| + padded entries, n = padded unknowns)."""
    from gradleak.models import build_model

    model = build_model("cnn6", input_shape=(3, size, size), num_classes=2)
    total = 0.0
    for layer in layer_chain(model, input_shape=(3, size, size))[:-1]:
        geo = Geometry.of(layer)
        c, h, w = geo.in_shape
        n_pad = c * (h + 2 * geo.padding[0]) * (w + 2 * geo.padding[1])
        m = layer.module.weight.numel() + layer.out_size + (n_pad - geo.n)
        total += 4.0 * m * n_pad ** 2
    return total


def ours(obs, truth, precision: str) -> dict:
    rec = create_attack("rgap", precision=precision).run(obs)
    return {"seconds": rec.seconds, "mse": float(((rec.inputs - truth.inputs) ** 2).mean()),
            "solvers": rec.notes[-1]}


def chosen_branch(obs):
    from gradleak.attacks.rgap import RGAPConfig, run_rgap

    return run_rgap(obs, RGAPConfig(), device=torch.device("cpu"))[0].best.branch


def peak_memory_mb(seed: int) -> float:
    """Peak resident memory of a fresh process that only simulates and runs R-GAP (float64)."""
    code = ("import resource, torch; from gradleak.scenario import Scenario, simulate; "
            "from gradleak.attacks import create_attack; "
            f"o, t = simulate(Scenario(dataset='histology', model='cnn6', image_size=32, seed={seed})); "
            "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss; create_attack('rgap').run(o); "
            "print(base, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    return float(out[-1]) / 1024, float(out[-2]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 image, dense reference at 8x8 only")
    parser.add_argument("--dense-sizes", default="8,16", help="input sizes for the dense reference (default 8,16; 32 takes long)")
    args = parser.parse_args()
    seeds = [0] if args.quick else [0, 1, 2]
    record: dict = {"load_before": os.getloadavg(), "threads": torch.get_num_threads(), "images": []}
    for seed in seeds:
        obs, truth = observation(32, seed)
        row = {"seed": seed, "forward_backward_s": forward_backward_seconds(obs),
               "float64": ours(obs, truth, "float64"), "float32": ours(obs, truth, "float32")}
        row["ratio_float64_to_forward_backward"] = row["float64"]["seconds"] / row["forward_backward_s"]
        record["images"].append(row)
        print(json.dumps(row), flush=True)
    peak, base = peak_memory_mb(0)
    record["peak_rss_mb"], record["rss_before_attack_mb"] = peak, base
    sizes = [8] if args.quick else [int(v) for v in args.dense_sizes.split(",")]
    record["dense_reference"] = []
    for size in sizes:
        obs, truth = crop(*observation(32, 0), size)
        mine = ours(obs, truth, "float64")
        x, seconds, nbytes, per_layer = dense_public_rgap(obs, chosen_branch(obs))
        entry = {"size": size, "seconds": seconds, "mse": float(((x.reshape(truth.inputs.shape) - truth.inputs) ** 2).mean()),
                 "largest_matrix_mb": nbytes / 2**20, "per_layer_seconds": per_layer,
                 "ours_float64_seconds": mine["seconds"], "ours_float64_mse": mine["mse"]}
        entry["speedup"] = seconds / mine["seconds"]
        entry["flops_model"] = dense_flops(size)
        record["dense_reference"].append(entry)
        print(json.dumps(entry), flush=True)
    base = record["dense_reference"][-1]
    record["dense_extrapolated_32"] = {
        "from_size": base["size"], "seconds": base["seconds"] * dense_flops(32) / base["flops_model"],
        "note": "extrapolated, not measured: measured time x (4 m n^2 flop model at 32x32 / at the measured size)"}
    record["load_after"] = os.getloadavg()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "rgap_speed.json").write_text(json.dumps(record, indent=2) + "\n")
    write_markdown(record)


def write_markdown(record: dict) -> None:
    f64 = [r["float64"] for r in record["images"]]
    f32 = [r["float32"] for r in record["images"]]

    def ms(values):
        a = np.array(values, dtype=float)
        return f"{a.mean():.3g} +- {a.std():.2g}"

    lines = [
        "# R-GAP speed (CNN6, untrained, histology 3x32x32)",
        "",
        f"Shared 2-core machine: load average {record['load_before'][0]:.1f} before, {record['load_after'][0]:.1f} after; "
        f"torch threads {record['threads']}. Times are wall-clock and inflated by the load; the ratio to one "
        "forward+backward of CNN6 is the load-independent figure.",
        "",
        "| solver | seconds | MSE (raw) | x forward+backward |",
        "|---|---|---|---|",
        f"| ours float64 | {ms([r['seconds'] for r in f64])} | {ms([r['mse'] for r in f64])} | "
        f"{ms([r['ratio_float64_to_forward_backward'] for r in record['images']])} |",
        f"| ours float32 | {ms([r['seconds'] for r in f32])} | {ms([r['mse'] for r in f32])} | |",
    ]
    for d in record["dense_reference"]:
        lines.append(f"| dense lstsq (public approach), {d['size']}x{d['size']} | {d['seconds']:.3g} | {d['mse']:.3g} | "
                     f"{d['speedup']:.0f}x our float64 ({d['ours_float64_seconds']:.2g} s, MSE {d['ours_float64_mse']:.2g}) |")
    ex = record["dense_extrapolated_32"]
    ours32 = np.mean([r["seconds"] for r in f64])
    lines.append(f"| dense lstsq at 32x32, EXTRAPOLATED from {ex['from_size']}x{ex['from_size']} by its flop model | "
                 f"~{ex['seconds']:.3g} | not run | ~{ex['seconds'] / ours32:.0f}x our float64 at 32x32 |")
    lines += ["", f"Peak resident memory of a process running our float64 solver: {record['peak_rss_mb']:.0f} MB "
              f"({record['rss_before_attack_mb']:.0f} MB before the attack started: torch, data, model). "
              f"Largest dense matrix of the public approach: "
              f"{max(d['largest_matrix_mb'] for d in record['dense_reference']):.0f} MB.", ""]
    (RESULTS / "rgap_speed.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
