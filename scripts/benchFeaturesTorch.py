"""PyTorch's CPU inference speed for torchvision's resnet18 / vit_b_16 (random weights), for `npm run bench:features`.

Prints images_per_second=<x>; exits non-zero when torch or torchvision is missing.
"""
import argparse
import time

import torch
import torchvision

parser = argparse.ArgumentParser()
parser.add_argument("--model", choices=["resnet18", "vit_b_16"], required=True)
parser.add_argument("--threads", type=int, default=2)
parser.add_argument("--batch", type=int, default=32)
parser.add_argument("--reps", type=int, default=3)
args = parser.parse_args()

torch.set_num_threads(args.threads)
net = getattr(torchvision.models, args.model)().eval()
batch = torch.randn(args.batch, 3, 224, 224)
with torch.inference_mode():
    net(batch)
    start = time.perf_counter()
    for _ in range(args.reps):
        net(batch)
    seconds = time.perf_counter() - start
print(f"images_per_second={args.batch * args.reps / seconds:.3f}")
