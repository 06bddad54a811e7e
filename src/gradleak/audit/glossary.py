"""The report's glossary: every technical term the detail sections use, with the words that link to it.

The verdict box is written for the person who decides (plain words only); the detail sections
may use the field's terms, but each one links here. :data:`TERMS` maps every spelling that
appears in the page (``rgap``, ``R-GAP``) to its entry's anchor; a test checks that the verdict
box contains none of them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Entry:
    anchor: str  # id of the definition in the page
    term: str  # as the glossary heads it
    words: tuple[str, ...]  # spellings in the page that link here (whole words, case-sensitive)
    meaning: str


ENTRIES = (
    Entry("g-ssim", "SSIM", ("SSIM",),
          "Structural similarity between a private image and its reconstruction, 0 to 1 (1 = identical). A blind "
          "guess scores near 0; from ~0.3 the image's layout is recognisable, from ~0.6 its details. The verdict's "
          "risk levels use it; the verdict box calls it 'similarity'."),
    Entry("g-psnr", "PSNR (dB)", ("PSNR",),
          "Peak signal-to-noise ratio in decibels; higher means closer. Above ~48 dB the error is below one grey "
          "level of an 8-bit image: the reconstruction is exact for every practical purpose, and whether it scores "
          "55 or 85 dB depends on floating-point rounding (so two exact figures from different settings differ "
          "without meaning anything). How much a low PSNR means depends on the data: compare it with the blind "
          "guess (a constant image of the data's mean colour) on the same data."),
    Entry("g-fsim", "FSIM", ("FSIM",), "Feature similarity (phase congruency and gradient magnitude), 0 to 1."),
    Entry("g-mismatch", "Update mismatch", ("update mismatch", "Update mismatch", "mismatch"),
          "1 - cosine similarity between the update a reconstruction would produce and the one observed. The "
          "attacker can compute it without the private data; it picks the reconstruction with the lowest. A low "
          "mismatch does not prove success: with several images behind one update, noise images can reproduce "
          "the update almost as well as the truth."),
    Entry("g-pick", "Attacker's pick", ("attacker's pick",),
          "Among all attacks' reconstructions of one update, the one with the lowest update mismatch: what a real "
          "attacker would believe, chosen without the private data."),
    Entry("g-call", "Attacker's own check", ("attacker's own check",),
          "Whether the attacker can tell, without the private data, that an image was recovered: the attack's "
          "exactness certificate where it has one; otherwise two attacks of different kinds (e.g. closed-form "
          "R-GAP and optimisation iDLG) producing the same image (SSIM >= 0.6 between their reconstructions). Two "
          "unrelated methods rarely agree on a wrong image."),
    Entry("g-worst", "Defender's worst case", ("defender's worst case", "Defender's worst case"),
          "The best attack per batch size scored with the private images: an upper bound the attacker reaches "
          "only if it can recognise the right reconstruction some other way (e.g. by eye)."),
    Entry("g-label", "Label accuracy", ("label accuracy", "labels recovered"),
          "Share of the batch's labels (classes, often the diagnosis) the attacker recovers from the update."),
    Entry("g-batch", "Batch size", (),  # everyday enough; linking each of its many uses would drown the others
          "Samples behind one shared update. Smaller batches leak more; a small hospital or a late-joining client "
          "may share updates of very few patients."),
    Entry("g-client-acc", "Client accuracy", ("client accuracy",),
          "Test accuracy of the federated model trained with the defense: the price of privacy. 'accuracy -3.7 "
          "points' means 3.7 percentage points below the undefended model."),
    Entry("g-fedsgd", "FedSGD / FedAvg", ("fedsgd", "FedSGD", "fedavg", "FedAvg"),
          "Federated protocols: with FedSGD a client shares one gradient of its batch; with FedAvg it trains a few "
          "local steps and shares the weight change."),
    Entry("g-ra-i", "RA-i (rank analysis index)", ("RA-i", "rank analysis", "Rank analysis"),
          "From R-GAP's paper: per layer, unknowns minus independent constraints the update gives about that "
          "layer's input. At or below 0 the input is pinned down and R-GAP recovers it in closed form."),
    Entry("g-rgap", "rgap (R-GAP)", ("rgap", "R-GAP"),
          "Recursive Gradient Attack on Privacy (Zhu & Blaschko 2021): solves for the input layer by layer in "
          "closed form; exact for one sample when the rank analysis allows."),
    Entry("g-idlg", "idlg (iDLG)", ("idlg", "iDLG"),
          "Improved Deep Leakage from Gradients (Zhao et al. 2020): reads the label off the output layer's update, "
          "then optimises an image (L-BFGS) until its update matches the observed one."),
    Entry("g-dlg", "dlg (DLG)", ("dlg", "DLG"),
          "Deep Leakage from Gradients (Zhu et al. 2019): optimises images and soft labels together to match the "
          "update."),
    Entry("g-ig", "ig (Inverting Gradients)", ("ig", "IG", "Inverting Gradients"),
          "Geiping et al. 2020: matches the update's direction (cosine) with a smoothness prior (total variation), "
          "Adam with signed gradients."),
    Entry("g-fedavg-attack", "fedavg (FedAvg attack)", ("FedAvg attack",),
          "Dimitrov et al. 2022: for clients that take several local steps and shuffle their data every epoch; "
          "reconstructs each epoch's samples through a simulation of the local training and pulls the epochs' "
          "reconstructions towards their common consensus."),
    Entry("g-cinet", "cinet (CI-Net)", ("cinet", "CI-Net"),
          "An over-parameterised convolutional generator whose weights are optimised so that its output's update "
          "matches the observed one; the network's structure acts as an image prior."),
    Entry("g-hgap", "hgap (H-GAP)", ("hgap", "H-GAP"),
          "R-GAP or an optimisation attack per sample, whichever gives the smoother image."),
    Entry("g-prior", "giz, gias, giml (generative priors)", ("giz", "gias", "giml", "prior"),
          "Attacks that search the input space of a generator trained on the attacker's own data (a prior), so "
          "that reconstructions look like real images; they need a trained generator (--prior)."),
    Entry("g-spear", "spear (SPEAR)", ("spear", "SPEAR"),
          "Dimitrov et al. 2024: splits a batch's update through a first linear+ReLU layer and recovers every "
          "sample exactly; each recovered sample carries the attacker's own certificate of exactness."),
    Entry("g-imprint", "imprint (Robbing the Fed)", ("imprint", "imprint block", "Robbing the Fed"),
          "Malicious-server attack (Fowl et al. 2022): the server puts a crafted layer in front of the model whose "
          "rows fire for inputs in narrow bins of one statistic; a sample alone in its bin is read out of the update "
          "exactly, even from a sum of many clients' updates."),
    Entry("g-secagg", "Secure aggregation", ("secure aggregation", "Secure aggregation"),
          "The server only sees the sum of several clients' updates. It hides which client sent what, but a crafted "
          "model can still read samples out of the sum."),
    Entry("g-dp", "DP-SGD and epsilon", ("DP-SGD", "dpsgd", "epsilon", "DP"),
          "Differentially private training: each sample's gradient is clipped and Gaussian noise is added; epsilon "
          "bounds how much any one patient can change what is shared (smaller is more private)."),
    Entry("g-inspect", "gradleak inspect", (),  # a command to run, named in the verdict box as such
          "The client-side check of a received model: refuses models with imprint-style layers before training."),
)

TERMS: dict[str, str] = {word: e.anchor for e in ENTRIES for word in e.words}
