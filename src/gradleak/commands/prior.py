"""``gradleak prior train``: train a generator prior on the attacker's own split of a data set.

Writes ``prior.json`` + ``generator.safetensors`` (loadable by ``gradleak attack --prior``),
``samples.png`` (generated samples, each above its nearest training image, and held-out real
images), ``quality.json`` (nearest-neighbour and Frechet figures against the training images and
a held-out part of the attacker's split, see :mod:`gradleak.priors.quality`) and ``train_log.json``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prior", help="generator priors for the generative-prior attacks (giz, gias)")
    actions = p.add_subparsers(dest="prior_command", required=True, parser_class=type(p))
    t = actions.add_parser("train", help="train a generator prior on the attacker's own (disjoint) data split")
    t.add_argument("--dataset", required=True, help="dataset name, e.g. histology, medmnist:breastmnist")
    t.add_argument("--arch", default="dcgan", help="generator architecture: dcgan (default) or stylegan")
    t.add_argument("--steps", type=int, default=None, help="training steps (default: the config's)")
    t.add_argument("--batch-size", type=int, default=None, help="images per training step")
    t.add_argument("--latent-dim", type=int, default=None, help="latent size")
    t.add_argument("--width", type=int, default=None, help="channels of the first generator map")
    t.add_argument("--lr", type=float, default=None, help="Adam step size")
    t.add_argument("--image-size", type=int, default=None, help="image size (dataset default if omitted)")
    t.add_argument("--grayscale", action="store_true", help="convert images to one channel")
    t.add_argument("--data-root", default=None, help="directory with dataset files (e.g. MedMNIST .npz)")
    t.add_argument("--held-out", type=float, default=0.15,
                   help="fraction of the attacker's split kept out of training to measure the prior (default 0.15)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.add_argument("--out", required=True, type=Path)
    t.set_defaults(func=cmd_prior_train)


def cmd_prior_train(args: argparse.Namespace) -> None:
    import dataclasses

    import torch
    from tqdm import tqdm

    from .. import __version__
    from ..cli import _check_device
    from ..outdir import atomic_directory, write_json
    from ..errors import GradleakError
    from ..priors import GENERATORS, PriorTrainConfig, attacker_data, hold_out, sample_quality, save_prior, train_prior
    from ..priors.quality import nearest_neighbour_index
    from ..report.plots import save_image_grid

    device = _check_device(args.device)
    GENERATORS.get(args.arch)
    if not 0.0 <= args.held_out < 0.5:
        raise GradleakError(f"--held-out must be a fraction in [0, 0.5), got {args.held_out}")
    overrides = {k: getattr(args, k) for k in ("steps", "batch_size", "latent_dim", "width", "lr") if getattr(args, k) is not None}
    config = PriorTrainConfig(arch=args.arch, **overrides)
    split = attacker_data(args.dataset, data_root=args.data_root, image_size=args.image_size, grayscale=args.grayscale)
    train, held_out = hold_out(split.data.inputs, fraction=args.held_out)
    generator = torch.Generator().manual_seed(args.seed)
    start = time.perf_counter()
    with tqdm(total=config.steps, desc=f"prior {args.arch}", unit="step", file=sys.stderr, disable=args.quiet,
              dynamic_ncols=True, leave=False) as bar:
        gen, log = train_prior(train, config=config, generator=generator, device=device, progress=bar.update)
    seconds = time.perf_counter() - start
    gen = gen.cpu()
    quality = sample_quality(gen, train=train, held_out=held_out, generator=torch.Generator().manual_seed(args.seed + 1))
    info = {
        "version": __version__, "dataset": args.dataset, "image_size": args.image_size, "grayscale": args.grayscale,
        "attacker_split": split.rule, "train_samples": len(train), "held_out_samples": len(held_out),
        "seed": args.seed, "config": dataclasses.asdict(config), "seconds": seconds, "quality": quality,
    }
    with torch.no_grad():
        samples = gen(gen.sample_latent(16, generator=torch.Generator().manual_seed(args.seed + 2)))
    nearest = train[nearest_neighbour_index(samples[:8], train)]
    rows = [samples[:8], nearest, samples[8:16]] + ([held_out[:8]] if len(held_out) else [])
    labels = ["samples", "nearest train", "samples"] + (["held out"] if len(held_out) else [])
    with atomic_directory(args.out) as tmp:
        save_prior(tmp, generator=gen, info=info)
        write_json(tmp / "quality.json", quality)
        write_json(tmp / "train_log.json", log)
        save_image_grid(rows, tmp / "samples.png", row_labels=labels)
    fd = f", pooled-pixel FD {quality['fd_samples']:.3g} (real {quality['fd_held_out']:.3g}, untrained {quality['fd_untrained']:.3g})" \
        if "fd_samples" in quality else ""
    print(f"prior ({args.arch}, {len(train)} images, {config.steps} steps, {seconds:.0f} s): "
          f"sample->train NN rmse {quality['sample_to_train']:.4f}, train->train {quality['train_to_train']:.4f}{fd}  -> {args.out}")
