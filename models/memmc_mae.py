"""MemMC-MAE's networks (Tian et al., "Unsupervised Anomaly Detection in Medical Images with a
Memory-augmented Multi-level Cross-attentional Masked Autoencoder", MLMI 2023, arXiv:2203.11725).

A masked autoencoder (:class:`models.mae.MaskedAutoencoder`: patch embedding, fixed sine-cosine
position embeddings in encoder and decoder, class and mask tokens, timm ViT blocks, MSE on the
masked patches) with three changes, each a switch so that the paper's ablation (Table 2) is the
same class:

- **Memory-augmented encoder** (``memory_slots`` > 0; paper Eq. 1): in every encoder block the
  keys and values of self-attention are extended with m learnable per-block memory slots,
  :class:`MemoryAttention`. It follows the Meshed-Memory Transformer's
  ``ScaledDotProductAttentionMemory`` (github.com/aimagelab/meshed-memory-transformer,
  ``models/transformer/attention.py``): memory keys (1, m, H·d_k) are multiplied by √d_k and
  memory values (1, m, H·d_v) by √m before they are split into heads, initialised with
  ``nn.init.normal_(m_k, 0, 1/d_k)`` and ``normal_(m_v, 0, 1/m)`` (in M2's code the second
  argument is the *standard deviation*: N(0, (1/d_k)²) and N(0, (1/m)²)), d_k the per-head width.
- **U-Net-like long skips** (``long_skips``; the paper names them without a pattern; chosen
  here): encoder block D−1−i (i < D/2, D blocks) receives the input of block i: the two are
  concatenated and fused by a Linear(2·dim → dim) before the block, as U-ViT's long skips
  (Bao et al., CVPR 2023, ``skip_linear``). Mirrored so that the patch embedding reaches the
  last block and no block receives its own input (D = 6: 5 ← input of 0, 4 ← input of 1,
  3 ← input of 2; an odd D leaves the middle block without one).
- **Multi-level cross-attention decoder** (``multi_level``; paper Eq. 2–3, circular as printed,
  so M2's ``MeshedDecoderLayer`` fills in, ``models/transformer/decoders.py``): each decoder
  block runs self-attention, then one cross-attention (shared by the levels, as M2's
  ``enc_att``) from its tokens to every encoder block's output; each level l gets a gate
  α_l = σ(W_l [S; C_l]) from the concatenation of the self-attention output S and that level's
  cross-attention output C_l, and the block's output is the position-wise MLP of
  Σ_l α_l ⊙ C_l / √L. M2's sub-layers are post-norm (x ↦ LN(x + f(x))) and so are these. The
  encoder levels are brought to the decoder's width by the MAE's own linear projection
  (``decoder_embed``) after the encoder's final LayerNorm, shared by every level.
  Deviation from M2: timm's ``Mlp`` (GELU, as the ViT blocks) for M2's ReLU feed-forward; no
  dropout (MAE uses none).

With ``memory_slots=0, long_skips=False, multi_level=False`` the network is exactly
:class:`~models.mae.MaskedAutoencoder` (the ablation's first row).

:class:`MemMCScorer` is the detector: the image is reconstructed under T fixed random masks
(buffers drawn once from the run's seed); for mask t the reconstruction is the input on the
visible patches and the prediction on the masked ones, its per-pixel MS-SSIM error
1 − MS-SSIM (:func:`models.ssim.ms_ssim_map`) is averaged within each patch, and each patch's
error is averaged over the masks that hid it; heatmap = those patch errors painted over their
pixels, score = the heatmap's mean. One graph, exportable to ONNX.

Shapes: images (N, 1, S, S); token sequences (N, 1 + K, D) with the class token first;
heatmaps (N, S, S); scores (N,).
"""
from __future__ import annotations

import math
from functools import partial

import torch
import torch.nn.functional as F
from timm.layers import Mlp
from timm.layers.attention import Attention
from torch import Tensor, nn

from cxrscreen.models.mae import MaskedAutoencoder, mask_indices, random_masks, visible_count
from cxrscreen.models.ssim import ms_ssim_map


class MemoryAttention(Attention):
    """timm's multi-head self-attention with M2's learnable memory slots appended to keys and values.

    Args:
        dim: token width; num_heads: heads (d_k = dim / num_heads).
        memory_slots: m, the number of memory slots (>= 1).
    """

    def __init__(self, dim: int, num_heads: int, memory_slots: int, qkv_bias: bool = True) -> None:
        super().__init__(dim, num_heads=num_heads, qkv_bias=qkv_bias)
        if memory_slots < 1:
            raise ValueError(f"memory_slots must be >= 1, got {memory_slots}")
        self.memory_slots = memory_slots
        self.m_k = nn.Parameter(torch.empty(1, memory_slots, dim))
        self.m_v = nn.Parameter(torch.empty(1, memory_slots, dim))
        self.reset_memory()

    def reset_memory(self) -> None:
        """M2's initialisation (``ScaledDotProductAttentionMemory.init_weights``): std 1/d_k and 1/m."""
        nn.init.normal_(self.m_k, 0.0, 1.0 / self.head_dim)
        nn.init.normal_(self.m_v, 0.0, 1.0 / self.memory_slots)

    def forward(self, x: Tensor, attn_mask: Tensor | None = None, is_causal: bool = False) -> Tensor:
        if attn_mask is not None or is_causal:
            raise ValueError("MemoryAttention attends to every token and slot: no attention mask")
        b, n, c = x.shape
        h, d = self.num_heads, self.head_dim
        q, k, v = self.qkv(x).reshape(b, n, 3, h, d).permute(2, 0, 3, 1, 4).unbind(0)  # (B, H, N, d) each
        m = self.memory_slots
        # M2: m_k scaled by √d_k, m_v by √m, both split into the heads like the projected keys / values
        m_k = (math.sqrt(d) * self.m_k).reshape(1, m, h, d).permute(0, 2, 1, 3).expand(b, -1, -1, -1)
        m_v = (math.sqrt(m) * self.m_v).reshape(1, m, h, d).permute(0, 2, 1, 3).expand(b, -1, -1, -1)
        out = F.scaled_dot_product_attention(q, torch.cat([k, m_k], dim=2), torch.cat([v, m_v], dim=2))
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class CrossAttention(nn.Module):
    """Multi-head attention from queries (N, Q, dim) to keys/values (N, K, dim): (N, Q, dim)."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} must be divisible by num_heads {num_heads}")
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, 2 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, queries: Tensor, context: Tensor) -> Tensor:
        b, n, c = queries.shape
        h, d = self.num_heads, self.head_dim
        q = self.q(queries).reshape(b, n, h, d).transpose(1, 2)
        k, v = self.kv(context).reshape(b, context.shape[1], 2, h, d).permute(2, 0, 3, 1, 4).unbind(0)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


def gated_sum(s: Tensor, levels: list[Tensor], gates: nn.ModuleList) -> Tensor:
    """M2's meshed fusion: Σ_l σ(W_l [s; c_l]) ⊙ c_l / √L (``MeshedDecoderLayer.forward``)."""
    total = sum(torch.sigmoid(gate(torch.cat([s, c], dim=-1))) * c for gate, c in zip(gates, levels))
    return total / math.sqrt(len(levels))


class MultiLevelDecoderBlock(nn.Module):
    """One decoder block of M2's meshed decoder (post-norm, as M2's ``MultiHeadAttention``).

    S = LN(x + SA(x)); C_l = LN(S + CA(S, E_l)) for every encoder level E_l (one CA and one LN
    shared by the levels); Z = Σ_l σ(W_l [S; C_l]) ⊙ C_l / √L; out = LN(Z + MLP(Z)).

    Args:
        dim, num_heads, mlp_ratio: the decoder's width, heads and MLP ratio.
        levels: L, the number of encoder levels attended to.
    """

    def __init__(self, dim: int, num_heads: int, levels: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        if levels < 1:
            raise ValueError(f"levels must be >= 1, got {levels}")
        norm = partial(nn.LayerNorm, eps=1e-6)
        self.self_attn = Attention(dim, num_heads=num_heads, qkv_bias=True)
        self.norm_self = norm(dim)
        self.cross_attn = CrossAttention(dim, num_heads)
        self.norm_cross = norm(dim)
        self.gates = nn.ModuleList([nn.Linear(2 * dim, dim) for _ in range(levels)])
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.norm_mlp = norm(dim)

    def forward(self, x: Tensor, levels: list[Tensor]) -> Tensor:
        if len(levels) != len(self.gates):
            raise ValueError(f"expected {len(self.gates)} encoder levels, got {len(levels)}")
        s = self.norm_self(x + self.self_attn(x))
        cross = [self.norm_cross(s + self.cross_attn(s, e)) for e in levels]
        z = gated_sum(s, cross, self.gates)
        return self.norm_mlp(z + self.mlp(z))


class MemMCMAE(MaskedAutoencoder):
    """MemMC-MAE: :class:`~models.mae.MaskedAutoencoder` with memory, long skips and the multi-level decoder.

    Args:
        memory_slots: m per encoder block (0: plain self-attention).
        long_skips: U-Net-like long skips in the encoder (see the module docstring).
        multi_level: the multi-level cross-attention decoder (False: MAE's decoder blocks).
        Others: as :class:`~models.mae.MaskedAutoencoder` (``norm_pix_loss`` stays off: the
            detector compares reconstructions with pixels).
    """

    def __init__(self, img_size: int = 224, patch_size: int = 16, in_chans: int = 1, embed_dim: int = 768,
                 depth: int = 12, num_heads: int = 12, decoder_embed_dim: int = 512, decoder_depth: int = 8,
                 decoder_num_heads: int = 16, mlp_ratio: float = 4.0, memory_slots: int = 40,
                 long_skips: bool = True, multi_level: bool = True) -> None:
        super().__init__(img_size, patch_size, in_chans, embed_dim, depth, num_heads, decoder_embed_dim,
                         decoder_depth, decoder_num_heads, mlp_ratio)
        if memory_slots < 0:
            raise ValueError(f"memory_slots must be >= 0, got {memory_slots}")
        self.memory_slots, self.long_skips, self.multi_level = memory_slots, long_skips, multi_level
        if memory_slots:
            for blk in self.blocks:
                blk.attn = MemoryAttention(embed_dim, num_heads, memory_slots)
        self.skip_linears = nn.ModuleList(
            [nn.Linear(2 * embed_dim, embed_dim) for _ in range(depth // 2)] if long_skips else [])
        if multi_level:
            self.decoder_blocks = nn.ModuleList(
                [MultiLevelDecoderBlock(decoder_embed_dim, decoder_num_heads, depth, mlp_ratio)
                 for _ in range(decoder_depth)])
        self._init_weights()

    def _init_weights(self) -> None:
        """MAE's initialisation of every linear layer and norm, then M2's of the memory slots."""
        super()._init_weights()
        for m in self.modules():
            if isinstance(m, MemoryAttention):
                m.reset_memory()

    # ------------------------------------------------------------------ encoder
    def _levels(self, x: Tensor) -> list[Tensor]:
        """Every encoder block's output (un-normalised), the long skips applied."""
        depth, n_skips = len(self.blocks), len(self.skip_linears)
        inputs, outs = [], []
        for i, blk in enumerate(self.blocks):
            j = depth - 1 - i  # the block whose input reaches this one
            if j < n_skips:
                x = self.skip_linears[j](torch.cat([x, inputs[j]], dim=-1))
            if i < n_skips:
                inputs.append(x)
            x = blk(x)
            outs.append(x)
        return outs

    def _blocks(self, x: Tensor) -> Tensor:
        return self.norm(self._levels(x)[-1])

    def encode_levels(self, x: Tensor, ids_keep: Tensor) -> list[Tensor]:
        """Every encoder level of the visible patches ``ids_keep`` (N, K), each after the final
        LayerNorm: D tensors (N, 1 + K, dim); the last is :meth:`encode`'s output."""
        tokens = self.patch_embed(x) + self.pos_embed[:, 1:]
        tokens = torch.gather(tokens, 1, ids_keep.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))
        return [self.norm(o) for o in self._levels(self._with_cls(tokens))]

    # ------------------------------------------------------------------ decoder
    def reconstruct(self, x: Tensor, ids_keep: Tensor, ids_restore: Tensor) -> Tensor:
        """Predicted patches (N, L, p*p*C) given precomputed :func:`~models.mae.mask_indices`."""
        if not self.multi_level:
            return self.decode(self.encode(x, ids_keep), ids_restore)
        levels = self.encode_levels(x, ids_keep)
        y = self.decoder_tokens(levels[-1], ids_restore)
        projected = [self.decoder_embed(e) for e in levels]
        for blk in self.decoder_blocks:
            y = blk(y, projected)
        return self.decoder_pred(self.decoder_norm(y))[:, 1:]


def covering_masks(n_masks: int, num_patches: int, mask_ratio: float, generator: torch.Generator,
                   attempts: int = 1000) -> Tensor:
    """``n_masks`` independent random masks (:func:`~models.mae.random_masks`) in which every patch
    is hidden at least once: sets are drawn from ``generator`` until one covers every patch.

    Returns:
        (n_masks, num_patches) bool, True = masked.

    Raises:
        ValueError: the masks cannot hide every patch (too few masks for the mask ratio), or
            ``attempts`` draws did not.
    """
    hidden = num_patches - visible_count(num_patches, mask_ratio)
    if n_masks < 1 or n_masks * hidden < num_patches:
        raise ValueError(f"{n_masks} masks hiding {hidden} of {num_patches} patches each cannot hide every patch")
    for _ in range(attempts):
        masks = random_masks(n_masks, num_patches, mask_ratio, generator)
        if bool(masks.any(dim=0).all()):
            return masks
    raise ValueError(f"{attempts} draws of {n_masks} random masks left some patch visible in every mask; "
                     "use more masks or a higher mask ratio")


class MemMCScorer(nn.Module):
    """The detector: image (N, 1, S, S) -> (score (N,), heatmap (N, S, S)).

    Args:
        model: the trained :class:`MemMCMAE` (or a :class:`~models.mae.MaskedAutoencoder`).
        test_masks: (T, L) bool, True = masked; every patch hidden by at least one.
        data_range: max − min of the input range (2 for [-1, 1]), for MS-SSIM's constants.
    """

    def __init__(self, model: MaskedAutoencoder, test_masks: Tensor, data_range: float = 2.0) -> None:
        super().__init__()
        if model.in_chans != 1:
            raise ValueError(f"MemMC-MAE scores single-channel images, the model takes {model.in_chans} channels")
        if test_masks.dim() != 2 or test_masks.shape[1] != model.num_patches or test_masks.dtype != torch.bool:
            raise ValueError(f"test_masks must be (T, {model.num_patches}) bool, "
                             f"got {tuple(test_masks.shape)} {test_masks.dtype}")
        hidden = test_masks.to(torch.float32)
        if not bool((hidden.sum(dim=0) > 0).all()):
            raise ValueError("every patch must be hidden by at least one test mask (else it is never reconstructed)")
        if not data_range > 0:
            raise ValueError(f"data_range must be > 0, got {data_range}")
        self.model, self.data_range = model, float(data_range)
        ids_keep, ids_restore = mask_indices(test_masks)
        self.register_buffer("test_masks", test_masks.clone())
        self.register_buffer("ids_keep", ids_keep)
        self.register_buffer("ids_restore", ids_restore)
        # per mask and patch: 1 / (masks hiding the patch) where the mask hides it, else 0
        self.register_buffer("patch_weights", hidden / hidden.sum(dim=0, keepdim=True))  # (T, L)
        p = model.patch_size
        # per mask, pixels of its masked patches = 1 (the prediction is used there), else 0
        pixel_hidden = hidden.unsqueeze(-1).expand(-1, -1, p * p * model.in_chans).contiguous()
        self.register_buffer("pixel_hidden", model.unpatchify(pixel_hidden))  # (T, 1, S, S)

    @property
    def n_masks(self) -> int:
        return int(self.test_masks.shape[0])

    def patch_errors(self, x: Tensor) -> Tensor:
        """Per mask and patch, the mean MS-SSIM error of the reconstruction: (T, N, L)."""
        m, n, model = self.n_masks, x.shape[0], self.model
        xr = x.repeat(m, 1, 1, 1)  # mask-major: rows t*N .. t*N+N-1 use mask t
        keep = self.ids_keep.unsqueeze(1).expand(-1, n, -1).reshape(m * n, -1)
        restore = self.ids_restore.unsqueeze(1).expand(-1, n, -1).reshape(m * n, -1)
        pred = model.unpatchify(model.reconstruct(xr, keep, restore))  # (T*N, 1, S, S)
        hidden = self.pixel_hidden.unsqueeze(1).expand(-1, n, -1, -1, -1).reshape(pred.shape)
        composite = hidden * pred + (1.0 - hidden) * xr  # the input where visible, the prediction where masked
        error = 1.0 - ms_ssim_map(xr, composite, self.data_range)  # (T*N, S, S)
        per_patch = model.patchify(error.unsqueeze(1)).mean(dim=-1)  # (T*N, L)
        return per_patch.reshape(m, n, -1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        patch_map = (self.patch_errors(x) * self.patch_weights.unsqueeze(1)).sum(dim=0)  # (N, L)
        p, model = self.model.patch_size, self.model
        pixels = patch_map.unsqueeze(-1).expand(-1, -1, p * p * model.in_chans).contiguous()
        heatmap = model.unpatchify(pixels)[:, 0]
        return heatmap.mean(dim=(1, 2)), heatmap
