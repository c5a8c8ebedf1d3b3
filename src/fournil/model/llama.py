"""The Llama family in one file: pre-RMSNorm, SwiGLU, RoPE, grouped-query attention.

BLOOM's choices (ALiBi instead of RoPE, a LayerNorm after the embeddings, LayerNorm and a biased GELU
MLP in the blocks) and QK-norm are switches; with all of BLOOM's on, the model is BLOOM's and exports to
`BloomForCausalLM` (fournil.model.hf). The tensor layout follows Hugging Face's `LlamaForCausalLM`
(rotate-half RoPE, query head h reads key/value head h // (n_heads / n_kv_heads)), so export is a
renaming of tensors. No parallelism, logging or I/O here: the trainer wraps the model from outside.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fournil.model.config import LlamaConfig

__all__ = ["KVCache", "Llama", "LlamaConfig"]

IGNORE = -100
CE_CHUNK_LOGITS = 2**26  # logits held at once by the loss (256 MB in float32), whatever the batch


class RMSNorm(nn.Module):
    """Root-mean-square norm, computed in float32 as the references do."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.type_as(x)


def make_norm(config: LlamaConfig, dim: int) -> nn.Module:
    """The block and final norm: LayerNorm with a bias for BLOOM, RMSNorm otherwise."""
    return nn.LayerNorm(dim, eps=config.norm_eps) if config.layer_norm else RMSNorm(dim, config.norm_eps)


def rope_tables(positions: Tensor, head_dim: int, base: float) -> tuple[Tensor, Tensor]:
    """cos and sin [T, head_dim/2] for the given positions, in float32 whatever the model's dtype."""
    inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, device=positions.device).float() / head_dim))
    angles = positions.float()[:, None] * inv_freq[None, :]
    return angles.cos(), angles.sin()


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate [B, T, H, D] by position, pairing dimension i with i + D/2 (the rotate-half layout)."""
    cos, sin = cos[:, None, :].to(x.dtype), sin[:, None, :].to(x.dtype)
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)


def alibi_slopes(n_heads: int) -> list[float]:
    """ALiBi's per-head slopes (Press et al. 2022), with BLOOM's rule for head counts that are not powers of 2."""
    closest = 2 ** math.floor(math.log2(n_heads))
    start = 2 ** (-8 / closest)
    slopes = [start ** (i + 1) for i in range(closest)]
    if closest < n_heads:
        slopes += alibi_slopes(2 * closest)[0::2][: n_heads - closest]
    return slopes


class KVCache:
    """Keys and values of the positions seen so far, preallocated for `max_len` positions."""

    def __init__(self, config: LlamaConfig, batch_size: int, max_len: int, device: torch.device | str, dtype: torch.dtype) -> None:
        shape = (config.n_layers, batch_size, config.n_kv_heads, max_len, config.head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.length = 0

    def update(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        end = self.length + k.shape[2]
        self.k[layer, :, :, self.length:end] = k
        self.v[layer, :, :, self.length:end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]


class Attention(nn.Module):
    def __init__(self, config: LlamaConfig, layer: int) -> None:
        super().__init__()
        self.layer = layer
        self.n_heads, self.n_kv_heads, self.head_dim = config.n_heads, config.n_kv_heads, config.head_dim
        self.wq = nn.Linear(config.dim, config.n_heads * self.head_dim, bias=config.bias)
        self.wk = nn.Linear(config.dim, config.n_kv_heads * self.head_dim, bias=config.bias)
        self.wv = nn.Linear(config.dim, config.n_kv_heads * self.head_dim, bias=config.bias)
        self.wo = nn.Linear(config.n_heads * self.head_dim, config.dim, bias=config.bias)
        self.q_norm = RMSNorm(self.head_dim, config.norm_eps) if config.qk_norm else None
        self.k_norm = RMSNorm(self.head_dim, config.norm_eps) if config.qk_norm else None

    def forward(self, x: Tensor, rope: tuple[Tensor, Tensor] | None, mask: Tensor | None, cache: KVCache | None) -> Tensor:
        B, T, _ = x.shape
        q = self.wq(x).view(B, T, self.n_heads, self.head_dim)
        k = self.wk(x).view(B, T, self.n_kv_heads, self.head_dim)
        v = self.wv(x).view(B, T, self.n_kv_heads, self.head_dim)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        if cache is not None:
            k, v = cache.update(self.layer, k, v)
        if self.n_kv_heads != self.n_heads:  # every SDPA kernel takes this; enable_gqa does not reach them all
            rep = self.n_heads // self.n_kv_heads
            k = k[:, :, None].expand(B, self.n_kv_heads, rep, *k.shape[2:]).reshape(B, self.n_heads, *k.shape[2:])
            v = v[:, :, None].expand(B, self.n_kv_heads, rep, *v.shape[2:]).reshape(B, self.n_heads, *v.shape[2:])
        if mask is not None and mask.is_floating_point():
            mask = mask.to(q.dtype)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None)
        return self.wo(y.transpose(1, 2).reshape(B, T, -1))


class FeedForward(nn.Module):
    """SwiGLU: w2(silu(w1 x) * w3 x); or, with gelu_mlp, BLOOM's w2(gelu(w1 x)) (tanh approximation)."""

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        self.w1 = nn.Linear(config.dim, config.ffn_dim, bias=config.bias)
        self.w2 = nn.Linear(config.ffn_dim, config.dim, bias=config.bias)
        self.w3 = None if config.gelu_mlp else nn.Linear(config.dim, config.ffn_dim, bias=config.bias)

    def forward(self, x: Tensor) -> Tensor:
        if self.w3 is None:
            return self.w2(F.gelu(self.w1(x), approximate="tanh"))
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class OutputHead(nn.Linear):
    """The vocabulary projection; given targets, it returns losses instead of logits. The loss goes
    through this module's forward so that wrappers hooking it (FSDP) see the weight used."""

    def forward(self, x: Tensor, targets: Tensor | None = None, reduction: str = "none", z_loss: float = 0.0,
                target_rows: Tensor | None = None):
        if targets is None:
            return super().forward(x)
        if reduction not in ("none", "sum"):
            raise ValueError(f"reduction {reduction!r}: 'none' (per-token losses) or 'sum' (training)")
        h, t = x.reshape(-1, x.shape[-1]), targets.reshape(-1)
        if reduction == "sum" and target_rows is not None and target_rows.numel():  # only the positions with a target reach the head
            total, picked = FusedLinearCrossEntropy.apply(h.index_select(0, target_rows), self.weight, t.index_select(0, target_rows), z_loss)
            return total, torch.zeros_like(t, dtype=picked.dtype).index_copy_(0, target_rows, picked).view(targets.shape)
        if reduction == "sum":
            total, losses = FusedLinearCrossEntropy.apply(h, self.weight, t, z_loss)
            return total, losses.view(targets.shape)
        if not torch.is_grad_enabled():
            return scored_cross_entropy(h, self.weight, t).view(targets.shape)
        logits = super().forward(x).float()
        return F.cross_entropy(logits.flatten(0, 1), t, ignore_index=IGNORE, reduction="none").view(targets.shape)


class Block(nn.Module):
    def __init__(self, config: LlamaConfig, layer: int) -> None:
        super().__init__()
        self.attn_norm = make_norm(config, config.dim)
        self.attn = Attention(config, layer)
        self.ffn_norm = make_norm(config, config.dim)
        self.ffn = FeedForward(config)

    def forward(self, x: Tensor, rope: tuple[Tensor, Tensor] | None, mask: Tensor | None, cache: KVCache | None) -> Tensor:
        x = x + self.attn(self.attn_norm(x), rope, mask, cache)
        return x + self.ffn(self.ffn_norm(x))


class Llama(nn.Module):
    """A decoder-only transformer; `forward` gives logits, or per-token losses when given targets."""

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.dim)
        self.embed_norm = nn.LayerNorm(config.dim, eps=config.norm_eps) if config.embedding_norm else None
        self.layers = nn.ModuleList(Block(config, i) for i in range(config.n_layers))
        self.norm = make_norm(config, config.dim)
        self.lm_head = OutputHead(config.dim, config.vocab_size, bias=False)
        self.init_weights()

    def tie_weights(self) -> None:
        """Share the output head with the embeddings when the config says so (again after `to_empty`)."""
        if self.config.tie_embeddings:
            self.lm_head.weight = self.embed.weight

    @torch.no_grad()
    def init_weights(self) -> None:
        """Normal(0, init_std) everywhere; the two projections that write into the residual stream
        (attention output, FFN down) scaled by 1/sqrt(2·n_layers), as GPT-2, nanoGPT and OLMo do, or
        zero with `zero_init_out`, as modded-nanogpt does: each block then starts as the identity."""
        self.tie_weights()
        std = self.config.init_std
        nn.init.normal_(self.embed.weight, std=std)
        if not self.config.tie_embeddings:
            nn.init.normal_(self.lm_head.weight, std=std)
        for layer in self.layers:
            for linear in (layer.attn.wq, layer.attn.wk, layer.attn.wv, layer.ffn.w1, layer.ffn.w3):
                if linear is not None:
                    nn.init.normal_(linear.weight, std=std)
            for linear in (layer.attn.wo, layer.ffn.w2):
                if self.config.zero_init_out:
                    nn.init.zeros_(linear.weight)
                else:
                    nn.init.normal_(linear.weight, std=std / math.sqrt(2 * self.config.n_layers))
        for module in self.modules():
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
            if isinstance(module, RMSNorm | nn.LayerNorm):
                nn.init.ones_(module.weight)
            if isinstance(module, nn.LayerNorm):
                nn.init.zeros_(module.bias)

    def forward(self, input_ids: Tensor, targets: Tensor | None = None, document_ids: Tensor | None = None,
                cache: KVCache | None = None, reduction: str = "none", z_loss: float = 0.0, target_rows: Tensor | None = None):
        """Logits [B, T, V]; or, given targets, the cross-entropy of each token [B, T] in float32, 0 where
        the target is -100. With `reduction="sum"` (training), the pair (Σ cross-entropy + z_loss · Σ
        log-sum-exp², a differentiable 0-d tensor; the per-token cross-entropy [B, T], detached), from
        a fused head that never holds the logits; `target_rows` (the flat indices of the positions
        with a target, known to the caller on the host, so no device sync) sends only those through
        the head, which SFT's answer-only loss makes a third of them. With document_ids, a token attends
        only to earlier tokens of its own document. With a cache (generation), input_ids continue the
        positions already in it."""
        T = input_ids.shape[1]
        offset = cache.length if cache is not None else 0
        if offset + T > self.config.context_length:
            raise ValueError(f"{offset + T} positions exceed the context length {self.config.context_length}")
        if cache is not None and document_ids is not None:
            raise ValueError("document_ids are for training; generation with a cache reads one document")
        x = self.embed(input_ids)
        if self.embed_norm is not None:
            x = self.embed_norm(x)
        positions = torch.arange(offset, offset + T, device=input_ids.device)
        rope = None if self.config.alibi else rope_tables(positions, self.config.head_dim, self.config.rope_base)
        mask = self._attention_mask(positions, offset, document_ids)
        for layer in self.layers:
            x = layer(x, rope, mask, cache)
        if cache is not None:
            cache.length += T
        if targets is None:
            return self.lm_head(self.norm(x))
        return self.lm_head(self.norm(x), targets, reduction, z_loss, target_rows)

    def _attention_mask(self, positions: Tensor, offset: int, document_ids: Tensor | None) -> Tensor | None:
        """None for plain causal attention (the fast path); otherwise a boolean mask, or with ALiBi
        an additive float mask, of shape [B or 1, H or 1, T, offset + T]."""
        if offset == 0 and document_ids is None and not self.config.alibi:
            return None
        keys = torch.arange(offset + len(positions), device=positions.device)
        allowed = (keys[None, :] <= positions[:, None])[None, None]
        if document_ids is not None:
            allowed = allowed & (document_ids[:, None, :, None] == document_ids[:, None, None, :])
        if not self.config.alibi:
            return allowed
        slopes = torch.tensor(alibi_slopes(self.config.n_heads), device=positions.device)
        bias = -slopes[:, None, None] * (positions[:, None] - keys[None, :]).float()
        return bias.masked_fill(~allowed, float("-inf"))

    def num_params(self, non_embedding: bool = False) -> int:
        """Parameters, each shared one counted once; `non_embedding` leaves out the embedding and output
        head matrices (Kaplan et al.'s N, the count scaling laws use)."""
        total = sum(p.numel() for p in self.parameters())
        if non_embedding:
            total -= self.embed.weight.numel() * (1 if self.config.tie_embeddings else 2)
        return total

    def flops_per_token(self, seq_len: int) -> float:
        """Training FLOPs per token, forward and backward: 6·N + 12·L·H·Q·T.

        N counts every matrix multiplied per token: the non-embedding parameters plus the output head
        (V·D, tied or not); the embedding lookup is free. 2 FLOPs per parameter forward, 4 backward.
        12·L·H·Q·T is attention's QKᵀ and AV (L layers, H heads of size Q, context T), counted over the
        full T×T square as in the PaLM paper's appendix B and nanoGPT, although causal kernels skip half,
        so MFU compares with theirs.
        """
        c = self.config
        n = self.num_params(non_embedding=True) + c.vocab_size * c.dim
        return 6.0 * n + 12.0 * c.n_layers * c.n_heads * c.head_dim * seq_len


def _compute_dtype(x: Tensor) -> torch.dtype:
    """The dtype autocast would run a matmul in, or the tensor's own."""
    device = x.device.type
    return torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else x.dtype


SCORE_CHUNK_LOGITS = 2**19  # logits at once when scoring without gradients (2 MB in float32: stays in cache)


def scored_cross_entropy(h: Tensor, weight: Tensor, targets: Tensor) -> Tensor:
    """FusedLinearCrossEntropy's loss for scoring, without gradients: the same float32 log-sum-exp, but
    only rows with a target reach the head (windows after a document's first score half their
    tokens), in small chunks whose logits are reused in place, so no large buffer is allocated."""
    losses = torch.zeros(targets.shape, dtype=torch.float32, device=h.device)
    rows = (targets != IGNORE).nonzero()[:, 0]
    dtype = _compute_dtype(h)
    w = weight.to(dtype)
    chunk = max(1, SCORE_CHUNK_LOGITS // weight.shape[0])
    for start in range(0, len(rows), chunk):
        index = rows[start:start + chunk]
        logits = (h[index].to(dtype) @ w.T).float()
        picked = logits.gather(1, targets[index][:, None])[:, 0]
        top = logits.amax(dim=-1, keepdim=True)
        lse = logits.sub_(top).exp_().sum(dim=-1).log_() + top[:, 0]
        losses[index] = lse - picked
    return losses


class FusedLinearCrossEntropy(torch.autograd.Function):
    """Σ cross-entropy of `h @ weightᵀ` (plus z-loss), its gradients computed in the forward.

    The logits are computed a chunk of tokens at a time and never held whole; while a chunk's softmax
    is at hand its gradients are taken at once, and backward only scales them by the incoming scalar.
    That is three head matmuls (logits, ∂h, ∂W), the fewest there are: an unfused loss does the same
    three but holds [N, V] logits, a recomputing one (backward redoes the logits) does four. The
    softmax is float32 as in F.cross_entropy; at 32k vocabulary and 16k tokens a micro-batch, 2 GB of
    bf16 logits and their float32 copy become 256 MB. z-loss (PaLM) adds z · lse² per token, whose
    gradient is 2 · z · lse · softmax.
    """

    @staticmethod
    def forward(ctx, h: Tensor, weight: Tensor, targets: Tensor, z_loss: float) -> tuple[Tensor, Tensor]:  # noqa: ANN001
        dtype = _compute_dtype(h)
        w = weight.to(dtype)
        chunk = max(1, CE_CHUNK_LOGITS // weight.shape[0])
        total = torch.zeros((), dtype=torch.float32, device=h.device)
        grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device)
        losses, grads_h = [], []  # joined once at the end: slice writes into one buffer cost compile copies
        for start in range(0, h.shape[0], chunk):
            hc, t = h[start:start + chunk].to(dtype), targets[start:start + chunk]
            valid = t != IGNORE
            logits = (hc @ w.T).float()
            lse = torch.logsumexp(logits, dim=-1)
            picked = logits.gather(1, t.clamp(min=0)[:, None])[:, 0]
            ce = torch.where(valid, lse - picked, 0.0)
            losses.append(ce)
            total = total + ce.sum()
            probs = logits.sub_(lse[:, None]).exp_()  # the softmax, in the logits' memory
            if z_loss:
                total = total + z_loss * torch.where(valid, lse.square(), 0.0).sum()
                probs.mul_((1 + 2 * z_loss * lse)[:, None])
            probs.scatter_add_(1, t.clamp(min=0)[:, None], torch.full_like(probs[:, :1], -1.0))
            dlogits = probs.mul_(valid[:, None]).to(dtype)
            grads_h.append(dlogits @ w)
            grad_w += (dlogits.T @ hc).float()
        losses, grad_h = torch.cat(losses), torch.cat(grads_h).to(h.dtype)
        ctx.save_for_backward(grad_h, grad_w)
        ctx.weight_dtype = weight.dtype
        ctx.mark_non_differentiable(losses)
        return total, losses

    @staticmethod
    def backward(ctx, grad_total: Tensor, grad_losses: Tensor | None) -> tuple[Tensor, Tensor, None, None]:  # noqa: ANN001, ARG004
        grad_h, grad_w = ctx.saved_tensors
        return grad_h * grad_total, (grad_w * grad_total).to(ctx.weight_dtype), None, None
