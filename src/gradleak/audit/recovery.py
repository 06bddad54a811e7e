"""Did the attack recover anything? The attacker's own answer, for the label of each picture.

A picture of noise framed as "the attacker's pick" reads as a leak unless something says the
attack failed. The label must come from what the attacker itself can know (no private data):

- an attack with an exactness certificate (spear, imprint) says so itself;
- a pick that does not even reproduce the update (mismatch >= ``MISFIT``) failed, and the
  attacker can see that;
- otherwise, agreement: the pick and an attack of a *different kind* (closed-form R-GAP and an
  optimisation attack, say) produce the same image. Unrelated methods rarely agree on a wrong
  image, while two optimisers from the same start can fail alike, hence "different kind".

The update mismatch alone cannot decide it: in the default audit iDLG's noise at batch 8
reproduces the update to 4e-8, within a factor of three of R-GAP's exact batch-1 image on
seed 1 (1.6e-8): a low mismatch says "not refuted", not "recovered".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import torch

AGREE_SSIM = 0.6  # two reconstructions "show the same image" at or above this SSIM (the high-risk line)
MISFIT = 1e-2  # update mismatch at which a reconstruction plainly fails to explain the update
EXACT_SHARE = 0.5  # "recovered the images" when at least this share of the batch is confirmed


@dataclass(frozen=True)
class AttackerCall:
    state: str  # "yes" (recovered the images), "some", "no" (nothing recognisable), "unknown" (cannot tell)
    confirmed: int  # images the attacker can confirm by its own check
    batch_size: int
    pick: str | None
    evidence: str  # how the attacker knows, in a clause


def agreeing(a: torch.Tensor, b: torch.Tensor, *, threshold: float = AGREE_SSIM) -> set[int]:
    """Indices of ``a``'s images that some image of ``b`` matches (one-to-one, SSIM >= ``threshold``)."""
    from scipy.optimize import linear_sum_assignment

    from ..metrics.image import ssim

    n, m = a.shape[0], b.shape[0]
    left = a.float().clamp(0, 1).repeat_interleave(m, dim=0)
    right = b.float().clamp(0, 1).repeat(n, 1, 1, 1)
    scores = ssim(left, right).per_sample.view(n, m)
    rows, cols = linear_sum_assignment(-scores.numpy())
    return {int(r) for r, c in zip(rows, cols) if scores[r, c] >= threshold}


def attacker_call(*, batch_size: int, records: Sequence[dict[str, Any]],
                  pictures: dict[str, torch.Tensor]) -> AttackerCall:
    """The attacker's own verdict on one round (``records``: that round's attack runs; ``pictures``:
    their reconstructions, full batch, keyed by attack name)."""
    ok = [r for r in records if r.get("status") == "ok"]
    pick = next((r for r in ok if r.get("chosen")), None)
    if pick is None:
        return AttackerCall("unknown", 0, batch_size, None, "no attack produced a usable reconstruction")
    name = pick["attack"]
    if pick.get("certified_fraction") is not None:
        k = round(pick["certified_fraction"] * batch_size)
        return _call(k, batch_size, name, f"{name} certifies {k} of {batch_size} as exact by itself")
    if pick.get("mismatch") is not None and pick["mismatch"] >= MISFIT:
        return _call(0, batch_size, name, f"even its best reconstruction ({name}) does not reproduce the update "
                                          f"(update mismatch {pick['mismatch']:.1e}), so the attacker knows it failed")
    others = [r["attack"] for r in ok if r.get("kind") != pick.get("kind") and r["attack"] in pictures]
    if name not in pictures or not others:
        return AttackerCall("unknown", 0, batch_size, name,
                            "no attack of another kind ran beside it, so the attacker has nothing to compare with")
    found: set[int] = set()
    witnesses = []
    for other in others:
        hits = agreeing(pictures[name], pictures[other])
        if hits:
            witnesses.append(other)
        found |= hits
    k = len(found)
    evidence = (f"{' and '.join(witnesses)} (another kind of attack) produced the same {k} image{'s' if k != 1 else ''}"
                if k else f"no attack of another kind ({', '.join(others)}) produced any of the same images")
    return _call(k, batch_size, name, evidence)


def _call(k: int, batch_size: int, pick: str, evidence: str) -> AttackerCall:
    state = "no" if k == 0 else ("yes" if k >= math.ceil(EXACT_SHARE * batch_size) else "some")
    return AttackerCall(state, k, batch_size, pick, evidence)


def headline(call: AttackerCall) -> str:
    """The label above a picture: what the attacker recovered, in its own judgement."""
    if call.state == "yes":
        what = "the image" if call.batch_size == 1 else f"the images ({call.confirmed} of {call.batch_size} confirmed)"
        return f"Attack recovered {what}"
    if call.state == "some":
        return f"Attack recovered some images ({call.confirmed} of {call.batch_size} confirmed)"
    if call.state == "no":
        return "Attack recovered nothing recognisable"
    return "The attacker cannot tell whether it recovered anything"
