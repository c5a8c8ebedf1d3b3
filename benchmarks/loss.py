"""The fused output head and loss against PyTorch's unfused one, in the same run.

Both compute Σ cross-entropy of `h @ Wᵀ` and its gradients for h and W from the same inputs: the
peer materialises the [N, V] logits and calls `F.cross_entropy` (what transformers' Llama does),
fournil's `FusedLinearCrossEntropy` works a chunk of tokens at a time and takes the gradients while
each chunk's softmax is at hand. The table shows the median time of forward + backward, the ratio,
the peak memory on CUDA, and the largest gradient difference (the two compute the same thing).

    python benchmarks/loss.py                                   # CUDA: 32k tokens, d 2048, 32k vocab, bf16
    python benchmarks/loss.py --tokens 2048 --dim 768           # the CPU default is smaller
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from fournil.model.llama import FusedLinearCrossEntropy


def fused(h: torch.Tensor, w: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return FusedLinearCrossEntropy.apply(h, w, t, 0.0)[0]


def unfused(h: torch.Tensor, w: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy((h @ w.T).float(), t, reduction="sum")


def measure(loss, h: torch.Tensor, w: torch.Tensor, t: torch.Tensor, repeats: int, autocast) -> tuple[float, float | None, list]:
    """(median seconds of forward + backward, peak CUDA memory in GiB or None, the gradients)."""
    cuda = h.device.type == "cuda"
    times = []
    for i in range(repeats + 1):  # the first call warms up
        h.grad = w.grad = None
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        with autocast:
            total = loss(h, w, t)
        total.backward()
        if cuda:
            torch.cuda.synchronize()
        if i:
            times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
    return statistics.median(times), peak, [h.grad.clone(), w.grad.clone()]


def main() -> None:
    cuda = torch.cuda.is_available()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=32768 if cuda else 2048)
    parser.add_argument("--dim", type=int, default=2048 if cuda else 768)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--repeats", type=int, default=10 if cuda else 3)
    args = parser.parse_args()
    device = "cuda" if cuda else "cpu"
    generator = torch.Generator().manual_seed(0)
    h = torch.randn(args.tokens, args.dim, generator=generator).to(device).requires_grad_()
    w = (torch.randn(args.vocab, args.dim, generator=generator) * 0.02).to(device).requires_grad_()
    t = torch.randint(0, args.vocab, (args.tokens,), generator=generator).to(device)
    autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=cuda)
    print(f"device {torch.cuda.get_device_name() if cuda else 'cpu'}, {'bf16 autocast' if cuda else 'float32'}, "
          f"{args.tokens} tokens, dim {args.dim}, vocab {args.vocab}, median of {args.repeats}")
    ours_s, ours_mem, ours_grads = measure(fused, h, w, t, args.repeats, autocast)
    peer_s, peer_mem, peer_grads = measure(unfused, h, w, t, args.repeats, autocast)
    diff = max(float((a - b).abs().max() / b.abs().max()) for a, b in zip(ours_grads, peer_grads, strict=True))
    memory = (lambda gib: f"{gib:8.2f} GiB" if gib is not None else "       n/a")
    print(f"{'':10}{'ms':>10}{'peak memory':>14}")
    print(f"{'fused':10}{ours_s * 1e3:>10.1f}  {memory(ours_mem)}")
    print(f"{'unfused':10}{peer_s * 1e3:>10.1f}  {memory(peer_mem)}")
    print(f"speed ratio (unfused / fused time): {peer_s / ours_s:.2f}; largest gradient difference {diff:.1e} of the largest gradient")


if __name__ == "__main__":
    main()
