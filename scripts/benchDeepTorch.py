"""PyTorch's CPU training step on a last-block tail, for `npm run bench:deep`.

A step is what bench:deep times on our side: the tail's forward from a batch of cut activations (no gradient to
them), a loss that is the logits weighted by a fixed random tensor, and the backward to every parameter of the tail.
Tails (random weights, eval mode, float32):
  resnet18_layer4   torchvision resnet18's layer4 + avgpool + fc, from 64 activations of 256×14×14
  vit_b_16_block11  torchvision vit_b_16's encoder block 11 + encoder LayerNorm + class token + head, from 64×197×768

Prints seconds_per_step=<best of --reps>; exits non-zero when torch or torchvision is missing.
"""
import argparse
import time

import torch
import torchvision

parser = argparse.ArgumentParser()
parser.add_argument("--tail", choices=["resnet18_layer4", "vit_b_16_block11"], required=True)
parser.add_argument("--threads", type=int, default=2)
parser.add_argument("--batch", type=int, default=64)
parser.add_argument("--reps", type=int, default=3)
args = parser.parse_args()

torch.set_num_threads(args.threads)
torch.manual_seed(0)


class ResnetTail(torch.nn.Module):
    def __init__(self):
        super().__init__()
        net = torchvision.models.resnet18()
        self.layer4, self.avgpool, self.fc = net.layer4, net.avgpool, net.fc

    def forward(self, x):
        return self.fc(torch.flatten(self.avgpool(self.layer4(x)), 1))


class VitTail(torch.nn.Module):
    def __init__(self):
        super().__init__()
        net = torchvision.models.vit_b_16()
        self.block, self.ln, self.head = net.encoder.layers[11], net.encoder.ln, net.heads

    def forward(self, x):
        return self.head(self.ln(self.block(x))[:, 0])


if args.tail == "resnet18_layer4":
    tail, cut = ResnetTail(), (args.batch, 256, 14, 14)
else:
    tail, cut = VitTail(), (args.batch, 197, 768)
tail.eval()
x = torch.randn(*cut)
weights = torch.randn(args.batch, 1000)


def step():
    tail.zero_grad(set_to_none=True)
    (tail(x) * weights).sum().backward()


step()
best = float("inf")
for _ in range(args.reps):
    start = time.perf_counter()
    step()
    best = min(best, time.perf_counter() - start)
print(f"seconds_per_step={best:.4f}")
print(f"torch={torch.__version__} threads={torch.get_num_threads()}")
