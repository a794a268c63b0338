"""Masked autoencoder with a ViT encoder and a light ViT decoder (He et al., "Masked Autoencoders
Are Scalable Vision Learners", CVPR 2022), built from timm ``Block`` and ``PatchEmbed``.

The architecture and the loss are those of the official code (github.com/facebookresearch/mae,
``models_mae.py``): patch embedding plus fixed 2-D sine-cosine position embeddings, a class
token, ViT blocks (pre-norm, qkv bias, LayerNorm eps 1e-6) and a final norm; the decoder
embeds the visible tokens, puts a learned mask token at every removed position, adds its own
fixed sine-cosine embedding, runs its blocks and predicts every patch's pixels; the loss is the
pixel MSE averaged over each patch and then over the masked (removed) patches only
(optionally on per-patch normalised pixels, ``norm_pix_loss``).

One change to the interface, none to the function: the official ``random_masking`` draws its
noise inside ``forward``; here a mask is an explicit input, a bool tensor (N, L) with True =
masked (removed), L = number of patches, so a detector can store fixed test-time masks and
give the same score every time. :func:`random_masks` draws masks exactly as the official code
(argsort of uniform noise, the first ``int(L * (1 - mask_ratio))`` kept).

Shapes: images (N, C, H, W) with H = W = ``img_size``; patch sequences (N, L, p*p*C) with the
official ``patchify`` order (row-major patches, each flattened as (p, q, c)).

:func:`load_pretrained` loads a timm ViT state dict (encoder only) or an official MAE
checkpoint (encoder and decoder) into a :class:`MaskedAutoencoder` with another number of input
channels (RGB patch-embedding weights are summed, decoder predictions averaged over colours)
or another grid size (position embeddings resampled bicubically).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import partial
from typing import Literal, NamedTuple

import torch
from timm.layers import PatchEmbed, resample_abs_pos_embed
from timm.models.vision_transformer import Block
from torch import Tensor, nn

CheckpointFormat = Literal["timm", "mae"]


def sincos_pos_embed(embed_dim: int, grid_size: int, cls_token: bool = True) -> Tensor:
    """Fixed 2-D sine-cosine position embedding, as ``util/pos_embed.py`` of the official MAE.

    Returns:
        (1 + grid_size², embed_dim) with a zero row first for the class token, or
        (grid_size², embed_dim) without it. Half of the channels encode the column, half the
        row (the official code's order: its ``grid[0]`` is the column coordinate).
    """
    if embed_dim % 4:
        raise ValueError(f"embed_dim must be divisible by 4 for a 2-D sine-cosine embedding, got {embed_dim}")
    coords = torch.arange(grid_size, dtype=torch.float64)
    rows, cols = torch.meshgrid(coords, coords, indexing="ij")
    omega = 1.0 / 10000 ** (torch.arange(embed_dim // 4, dtype=torch.float64) / (embed_dim / 4.0))

    def one_axis(pos: Tensor) -> Tensor:
        out = pos.reshape(-1, 1) * omega.reshape(1, -1)
        return torch.cat([torch.sin(out), torch.cos(out)], dim=1)

    emb = torch.cat([one_axis(cols), one_axis(rows)], dim=1)
    if cls_token:
        emb = torch.cat([torch.zeros(1, embed_dim, dtype=torch.float64), emb], dim=0)
    return emb.float()


def random_masks(n: int, num_patches: int, mask_ratio: float, generator: torch.Generator | None = None,
                 device: torch.device | str = "cpu") -> Tensor:
    """Per-image random masks as the official ``random_masking`` draws them.

    Returns:
        (n, num_patches) bool, True = masked; every row keeps exactly
        ``int(num_patches * (1 - mask_ratio))`` patches visible.
    """
    keep = visible_count(num_patches, mask_ratio)
    noise = torch.rand(n, num_patches, generator=generator)
    ids_shuffle = torch.argsort(noise, dim=1)
    mask = torch.ones(n, num_patches, dtype=torch.bool)
    mask[:, :keep] = False
    return torch.gather(mask, 1, torch.argsort(ids_shuffle, dim=1)).to(device)


def partition_masks(num_patches: int, n_masks: int, mask_ratio: float, generator: torch.Generator | None = None) -> Tensor:
    """Fixed test-time masks: a random order of the patches, mask l keeps the l-th block of it visible.

    The visible blocks follow each other cyclically through one random permutation, so the
    masks cover the image evenly: with 4 masks at 25 % visible every patch is visible in
    exactly one mask and masked in the other three.

    Returns:
        (n_masks, num_patches) bool, True = masked.

    Raises:
        ValueError: some patch would be visible in every mask (it would never be reconstructed).
    """
    keep = visible_count(num_patches, mask_ratio)
    if n_masks < 1:
        raise ValueError(f"n_masks must be >= 1, got {n_masks}")
    perm = torch.randperm(num_patches, generator=generator)
    masks = torch.ones(n_masks, num_patches, dtype=torch.bool)
    for m in range(n_masks):
        visible = perm[(torch.arange(keep) + m * keep) % num_patches]
        masks[m, visible] = False
    if not bool(masks.any(dim=0).all()):
        raise ValueError(f"{n_masks} masks at mask ratio {mask_ratio} leave some patch visible in every mask; "
                         "use a higher mask ratio or more masks")
    return masks


def visible_count(num_patches: int, mask_ratio: float) -> int:
    """Visible patches per mask (the official ``len_keep``), at least 1 and fewer than all."""
    if not 0.0 < mask_ratio < 1.0:
        raise ValueError(f"mask_ratio must be in (0, 1), got {mask_ratio}")
    keep = int(num_patches * (1 - mask_ratio))
    if not 1 <= keep < num_patches:
        raise ValueError(f"mask_ratio {mask_ratio} keeps {keep} of {num_patches} patches visible; need 1 .. {num_patches - 1}")
    return keep


def mask_indices(mask: Tensor) -> tuple[Tensor, Tensor]:
    """Gather indices of a mask (N, L) bool: (ids_keep (N, K), ids_restore (N, L)).

    ``ids_keep`` lists the visible patches of each row in patch order; ``ids_restore`` puts the
    sequence [visible..., masked...] back in patch order (the official code's ``ids_restore``).

    Raises:
        ValueError: rows keep different numbers of patches visible.
    """
    if mask.dim() != 2 or mask.dtype != torch.bool:
        raise ValueError(f"a mask must be a (N, L) bool tensor, got {tuple(mask.shape)} {mask.dtype}")
    visible = (~mask).sum(dim=1)
    if visible.numel() and not bool((visible == visible[0]).all()):
        raise ValueError(f"every mask must keep the same number of patches visible, got {sorted(set(visible.tolist()))}")
    keep = int(visible[0]) if visible.numel() else 0
    ids_shuffle = torch.argsort(mask.to(torch.int8), dim=1, stable=True)
    return ids_shuffle[:, :keep], torch.argsort(ids_shuffle, dim=1)


class MAEOutput(NamedTuple):
    """Predicted pixels of every patch (N, L, p*p*C) and the mask used (N, L) bool, True = masked."""

    pred: Tensor
    mask: Tensor


class MaskedAutoencoder(nn.Module):
    """MAE with a ViT encoder and a ViT decoder.

    Args:
        img_size: input side length (a multiple of ``patch_size``).
        patch_size: patch side length.
        in_chans: input channels (1 for radiographs).
        embed_dim, depth, num_heads: encoder width, blocks and heads (ViT-S: 384, 12, 6).
        decoder_embed_dim, decoder_depth, decoder_num_heads: decoder (MAE: 512, 8, 16).
        mlp_ratio: MLP hidden width over block width (4).
        norm_pix_loss: compute the loss on per-patch normalised pixels (the official option;
            then predictions are not pixels).
    """

    def __init__(self, img_size: int = 224, patch_size: int = 16, in_chans: int = 1, embed_dim: int = 384,
                 depth: int = 12, num_heads: int = 6, decoder_embed_dim: int = 512, decoder_depth: int = 8,
                 decoder_num_heads: int = 16, mlp_ratio: float = 4.0, norm_pix_loss: bool = False) -> None:
        super().__init__()
        if img_size % patch_size or img_size < patch_size:
            raise ValueError(f"img_size must be a positive multiple of patch_size {patch_size}, got {img_size}")
        for name, dim, heads in (("encoder", embed_dim, num_heads), ("decoder", decoder_embed_dim, decoder_num_heads)):
            if dim % heads or dim % 4:
                raise ValueError(f"{name} width {dim} must be divisible by its {heads} heads and by 4")
        if depth < 1 or decoder_depth < 1:
            raise ValueError(f"depth and decoder_depth must be >= 1, got {depth}, {decoder_depth}")
        self.img_size, self.patch_size, self.in_chans = img_size, patch_size, in_chans
        self.grid_size = img_size // patch_size
        self.num_patches = self.grid_size**2
        self.embed_dim, self.decoder_embed_dim = embed_dim, decoder_embed_dim
        self.norm_pix_loss = norm_pix_loss
        norm_layer = partial(nn.LayerNorm, eps=1e-6)

        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        # fixed (not learned) sine-cosine embeddings: buffers, so every parameter is trained
        self.register_buffer("pos_embed", sincos_pos_embed(embed_dim, self.grid_size).unsqueeze(0))
        self.blocks = nn.ModuleList(
            [Block(embed_dim, num_heads, mlp_ratio, qkv_bias=True, norm_layer=norm_layer) for _ in range(depth)])
        self.norm = norm_layer(embed_dim)

        self.decoder_embed = nn.Linear(embed_dim, decoder_embed_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_embed_dim))
        self.register_buffer("decoder_pos_embed", sincos_pos_embed(decoder_embed_dim, self.grid_size).unsqueeze(0))
        self.decoder_blocks = nn.ModuleList(
            [Block(decoder_embed_dim, decoder_num_heads, mlp_ratio, qkv_bias=True, norm_layer=norm_layer)
             for _ in range(decoder_depth)])
        self.decoder_norm = norm_layer(decoder_embed_dim)
        self.decoder_pred = nn.Linear(decoder_embed_dim, patch_size**2 * in_chans)
        self._init_weights()

    def _init_weights(self) -> None:
        """The official initialisation: xavier-uniform linear layers (and patch embedding as a
        linear layer), zero biases, unit LayerNorms, N(0, 0.02) class and mask tokens."""
        w = self.patch_embed.proj.weight.data
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.normal_(self.cls_token, std=0.02)
        nn.init.normal_(self.mask_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    # ------------------------------------------------------------------ patches
    def patchify(self, imgs: Tensor) -> Tensor:
        """(N, C, H, W) -> (N, L, p*p*C)."""
        p, g, c = self.patch_size, self.grid_size, self.in_chans
        x = imgs.reshape(imgs.shape[0], c, g, p, g, p)
        return torch.einsum("nchpwq->nhwpqc", x).reshape(imgs.shape[0], g * g, p * p * c)

    def unpatchify(self, x: Tensor) -> Tensor:
        """(N, L, p*p*C) -> (N, C, H, W)."""
        p, g, c = self.patch_size, self.grid_size, self.in_chans
        x = x.reshape(x.shape[0], g, g, p, p, c)
        return torch.einsum("nhwpqc->nchpwq", x).reshape(x.shape[0], c, g * p, g * p)

    # ------------------------------------------------------------------ encoder / decoder
    def _blocks(self, x: Tensor) -> Tensor:
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)

    def _with_cls(self, x: Tensor) -> Tensor:
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(x.shape[0], -1, -1)
        return torch.cat([cls, x], dim=1)

    def encode(self, x: Tensor, ids_keep: Tensor) -> Tensor:
        """Encode the visible patches ``ids_keep`` (N, K) of images x: (N, 1 + K, D), class token first."""
        tokens = self.patch_embed(x) + self.pos_embed[:, 1:]
        tokens = torch.gather(tokens, 1, ids_keep.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))
        return self._blocks(self._with_cls(tokens))

    def encode_all(self, x: Tensor) -> Tensor:
        """Encode every patch (no masking): (N, 1 + L, D), class token first."""
        return self._blocks(self._with_cls(self.patch_embed(x) + self.pos_embed[:, 1:]))

    def decoder_tokens(self, latent: Tensor, ids_restore: Tensor) -> Tensor:
        """The decoder's input (N, 1 + L, D_dec): the embedded visible tokens and a mask token at
        every removed position, in patch order, plus the decoder's position embedding."""
        x = self.decoder_embed(latent)
        n_masked = ids_restore.shape[1] + 1 - x.shape[1]
        seq = torch.cat([x[:, 1:], self.mask_token.expand(x.shape[0], n_masked, -1)], dim=1)
        seq = torch.gather(seq, 1, ids_restore.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
        return torch.cat([x[:, :1], seq], dim=1) + self.decoder_pos_embed

    def decode(self, latent: Tensor, ids_restore: Tensor) -> Tensor:
        """Predict every patch from the encoded visible tokens: (N, L, p*p*C)."""
        x = self.decoder_tokens(latent, ids_restore)
        for blk in self.decoder_blocks:
            x = blk(x)
        return self.decoder_pred(self.decoder_norm(x))[:, 1:]

    def reconstruct(self, x: Tensor, ids_keep: Tensor, ids_restore: Tensor) -> Tensor:
        """Predicted patches (N, L, p*p*C) given precomputed :func:`mask_indices`."""
        return self.decode(self.encode(x, ids_keep), ids_restore)

    def forward(self, x: Tensor, mask: Tensor) -> MAEOutput:
        """Reconstruct images x (N, C, H, W) under ``mask`` (N, L) bool, True = masked."""
        if mask.shape != (x.shape[0], self.num_patches):
            raise ValueError(f"mask must be (N, L) = ({x.shape[0]}, {self.num_patches}), got {tuple(mask.shape)}")
        ids_keep, ids_restore = mask_indices(mask)
        return MAEOutput(self.reconstruct(x, ids_keep, ids_restore), mask)

    def loss(self, x: Tensor, pred: Tensor, mask: Tensor) -> Tensor:
        """Mean squared pixel error over the masked patches only (the official ``forward_loss``)."""
        target = self.patchify(x)
        if self.norm_pix_loss:
            mean = target.mean(dim=-1, keepdim=True)
            var = target.var(dim=-1, keepdim=True)
            target = (target - mean) / (var + 1.0e-6) ** 0.5
        per_patch = ((pred - target) ** 2).mean(dim=-1)
        m = mask.to(per_patch.dtype)
        return (per_patch * m).sum() / m.sum()


# ---------------------------------------------------------------------- pre-trained weights
@dataclass
class LoadReport:
    """What :func:`load_pretrained` did.

    Attributes:
        format: "mae" (official MAE checkpoint: encoder and decoder) or "timm" (ViT encoder).
        loaded: our keys set from the checkpoint.
        missing: our keys the checkpoint did not provide (left as initialised).
        ignored: checkpoint keys we have no use for (classifier heads, ...).
        adapted: one line per conversion (channels, grid size, decoder skipped).
    """

    format: CheckpointFormat
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    adapted: list[str] = field(default_factory=list)


def unwrap_state_dict(obj: object) -> dict[str, Tensor]:
    """The tensor dict inside a checkpoint object: ``{"model": ...}`` (official MAE),
    ``{"state_dict": ...}`` or a plain state dict; a ``module.`` prefix (DDP) is removed."""
    if isinstance(obj, dict):
        for key in ("model", "state_dict", "model_state"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, Tensor) for v in obj.values()):
        raise ValueError("not a model checkpoint: expected a state dict of tensors, or one under 'model' / 'state_dict'")
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in obj.items()}


def _resample_pos(pos: Tensor, grid: int, what: str, adapted: list[str]) -> Tensor:
    n = pos.shape[1]
    prefix = 1 if math.isqrt(n - 1) ** 2 == n - 1 else 0
    old = math.isqrt(n - prefix)
    if old * old != n - prefix:
        raise ValueError(f"{what}: {n} positions are not a square grid (with or without a class token)")
    if prefix == 0:  # no class-token row (timm no_embed_class): ours has one, and MAE's is zero
        pos = torch.cat([torch.zeros_like(pos[:, :1]), pos], dim=1)
    if old != grid:
        pos = resample_abs_pos_embed(pos.float(), [grid, grid], [old, old], num_prefix_tokens=1)
        adapted.append(f"{what}: grid {old}x{old} resampled (bicubic) to {grid}x{grid}")
    return pos


def load_pretrained(model: MaskedAutoencoder, state_dict: dict[str, Tensor]) -> LoadReport:
    """Load a timm ViT or an official MAE state dict into ``model`` (in place).

    Conversions: patch-embedding weights summed over input colours when the checkpoint has 3
    and the model 1 (timm's ``adapt_input_conv``), decoder pixel predictions averaged over
    colours, position embeddings resampled to the model's grid. The encoder must match (width,
    depth, patch size); a decoder of another shape is skipped, with a note in the report.

    Raises:
        ValueError: the encoder does not match the model, or the dict is not a ViT/MAE one.
    """
    sd = unwrap_state_dict(state_dict)
    if "patch_embed.proj.weight" not in sd:
        raise ValueError("not a ViT / MAE checkpoint: no 'patch_embed.proj.weight'")
    fmt: CheckpointFormat = "mae" if any(k.startswith(("decoder_", "mask_token")) for k in sd) else "timm"
    report = LoadReport(fmt)
    ours = model.state_dict()
    new: dict[str, Tensor] = {}

    w = sd["patch_embed.proj.weight"]
    if w.shape[0] != model.embed_dim or w.shape[2:] != (model.patch_size, model.patch_size):
        raise ValueError(f"checkpoint encoder has width {w.shape[0]} and patch {tuple(w.shape[2:])}; this model has "
                         f"width {model.embed_dim} and patch {model.patch_size} (choose the matching architecture)")
    if w.shape[1] != model.in_chans:
        if model.in_chans != 1:
            raise ValueError(f"cannot adapt {w.shape[1]} input channels to {model.in_chans}")
        w = w.sum(dim=1, keepdim=True)
        report.adapted.append(f"patch_embed.proj.weight: {sd['patch_embed.proj.weight'].shape[1]} input channels summed to 1")
    new["patch_embed.proj.weight"] = w

    dec_keys = [k for k in sd if k.startswith(("decoder_", "mask_token"))]
    decoder_ok = bool(dec_keys)
    for k in dec_keys:  # check the whole decoder first: it is loaded entirely or not at all
        if k not in ours:
            decoder_ok = False
            report.adapted.append(f"decoder not loaded: the checkpoint has {k}, this model does not (other depth)")
            break
    ckpt_dec_blocks = {k.split(".")[1] for k in dec_keys if k.startswith("decoder_blocks.")}
    our_dec_blocks = {k.split(".")[1] for k in ours if k.startswith("decoder_blocks.")}
    if decoder_ok and ckpt_dec_blocks != our_dec_blocks:
        decoder_ok = False
        report.adapted.append(f"decoder not loaded: {len(ckpt_dec_blocks)} blocks in the checkpoint, {len(our_dec_blocks)} here")
    if decoder_ok and sd["decoder_embed.weight"].shape[0] != model.decoder_embed_dim:
        decoder_ok = False
        report.adapted.append(f"decoder not loaded: width {sd['decoder_embed.weight'].shape[0]} in the checkpoint, "
                              f"{model.decoder_embed_dim} here")

    for k, v in sd.items():
        if k == "patch_embed.proj.weight":
            continue
        if k.startswith(("decoder_", "mask_token")) and not decoder_ok:
            report.ignored.append(k)
            continue
        if k not in ours:
            report.ignored.append(k)
            continue
        if k in ("pos_embed", "decoder_pos_embed"):
            v = _resample_pos(v, model.grid_size, k, report.adapted)
        elif k in ("decoder_pred.weight", "decoder_pred.bias") and v.shape[0] != ours[k].shape[0]:
            colours = v.shape[0] // model.patch_size**2
            if colours * model.patch_size**2 != v.shape[0] or model.in_chans != 1:
                raise ValueError(f"{k}: cannot adapt {tuple(v.shape)} to {tuple(ours[k].shape)}")
            # official patchify order (p, q, c): colour is the fastest axis
            v = v.reshape(model.patch_size**2, colours, *v.shape[1:]).mean(dim=1)
            report.adapted.append(f"{k}: {colours} colour predictions averaged to 1")
        if v.shape != ours[k].shape:
            raise ValueError(f"checkpoint {k} has shape {tuple(v.shape)}, this model {tuple(ours[k].shape)} "
                             "(choose the matching architecture)")
        new[k] = v.to(ours[k].dtype)
    enc_blocks = {k.split(".")[1] for k in ours if k.startswith("blocks.")}
    ckpt_blocks = {k.split(".")[1] for k in sd if k.startswith("blocks.")}
    if ckpt_blocks != enc_blocks:
        raise ValueError(f"checkpoint encoder has {len(ckpt_blocks)} blocks, this model {len(enc_blocks)}")
    model.load_state_dict(new, strict=False)
    report.loaded = sorted(new)
    report.missing = sorted(k for k in ours if k not in new)
    return report
