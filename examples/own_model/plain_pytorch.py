"""Attack your own PyTorch model's update in a few lines (plain FedSGD training step).

    python examples/own_model/plain_pytorch.py          # ~10-30 s on one quiet core

Any ``nn.Module`` works: no registration, no data set of ours. Here the private batch is one
histology patch that ships with gradleak; in your hospital it is whatever your client trains on.
"""

import torch
from torch import nn

from gradleak import api
from gradleak.data import load_dataset
from gradleak.metrics import evaluate_images

torch.manual_seed(0)
net = nn.Sequential(  # your model: a small sigmoid CNN, as many compact medical classifiers are
    nn.Conv2d(3, 12, 5, stride=2, padding=2), nn.Sigmoid(),
    nn.Conv2d(12, 12, 5, stride=2, padding=2), nn.Sigmoid(),
    nn.Flatten(), nn.Linear(12 * 8 * 8, 2),
)
data = load_dataset("histology", image_size=32)
images, labels = data.inputs[:1], data.labels[:1]  # the client's private batch

# The client's training step: the gradient it would send to the server.
loss = nn.functional.cross_entropy(net(images), labels)
gradients = torch.autograd.grad(loss, list(net.parameters()))

# The server's side: five lines.
observation = api.observe(model=net, gradients=list(gradients), input_shape=(3, 32, 32), batch_size=1)
reconstruction = api.attack(observation, attack="idlg", seed=0, iterations=50)  # a budget; flat loss stops it sooner
scores = evaluate_images(reconstruction=reconstruction.inputs, truth=images,
                         recon_labels=reconstruction.labels, true_labels=labels)
print(f"PSNR {scores['psnr']:.1f} dB, label accuracy {scores['label_accuracy']:.0%}, "
      f"{reconstruction.iterations_used} of at most 50 iterations")
