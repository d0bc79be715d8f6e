"""Cutie's object transformer and object summarizer, and the sine positional encoding they share.

Re-expresses hkchengrex/Cutie:cutie/model/transformer/{object_transformer,object_summarizer,transformer_layers,
positional_encoding}.py with the same parameter names and arithmetic; written independently.

- :class:`ObjectSummarizer`: per object, ``Q`` summaries of its mask-encoder value: masked (half the summaries over
  the foreground, half over the background), sigmoid-weighted sums, with the summed weight (the area) appended,
  [B, N, Q, C+1]. The object memory is their running sum; a summary is read as sum / area.
- :class:`ObjectTransformer`: ``Q`` object queries per object, initialised from learned embeddings plus a
  projection of the object memory, refine the pixel readout in ``num_blocks`` blocks of: queries read the pixels
  (cross-attention masked to the foreground for the first Q/2 queries and to the background for the others, the
  masks coming from an auxiliary prediction before each block), query self-attention, FFN, pixels read the queries,
  a pixel FFN. Attention layers normalise their input first and add the output to the *normalised* input.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from corrvos.families.cutie.blocks import CAResBlock, GroupConv2d
from corrvos.models.common import aggregate_logits

__all__ = ["ObjectSummarizer", "ObjectTransformer", "SinePositionalEncoding"]


class SinePositionalEncoding(nn.Module):
    """2-D sine/cosine encoding of positions normalised to [0, ``scale``]: for C channels, C/2 for x then C/2 for y,
    each as interleaved (sin, cos) pairs over C/4 frequencies ``temperature ** (-2i / (C/2))``.

    The frequencies are a buffer named ``inv_freq`` (it is in the official state_dicts).
    """

    def __init__(self, dim: int, *, scale: float, temperature: float) -> None:
        super().__init__()
        half = int(math.ceil(dim / 4) * 2)  # channels per axis
        self.half, self.scale, self.eps = half, scale, 1e-6
        self.register_buffer("inv_freq", 1.0 / (temperature ** (torch.arange(0, half, 2).float() / half)))

    def grid(self, h: int, w: int, *, dtype: torch.dtype, device: torch.device) -> Tensor:
        """The encoding of an h x w grid, [h, w, 2 * half] (x channels first)."""
        pos_y = torch.arange(h, device=device, dtype=self.inv_freq.dtype)
        pos_x = torch.arange(w, device=device, dtype=self.inv_freq.dtype)
        pos_y = pos_y / (pos_y[-1] + self.eps) * self.scale
        pos_x = pos_x / (pos_x[-1] + self.eps) * self.scale
        emb_y = _sin_cos(torch.outer(pos_y, self.inv_freq))  # [h, half]
        emb_x = _sin_cos(torch.outer(pos_x, self.inv_freq))  # [w, half]
        emb = torch.zeros(h, w, 2 * self.half, device=device, dtype=dtype)
        emb[:, :, : self.half] = emb_x
        emb[:, :, self.half :] = emb_y.unsqueeze(1)
        return emb


def _sin_cos(angles: Tensor) -> Tensor:
    """[L, F] angles -> [L, 2F]: (sin, cos) of each frequency, interleaved."""
    return torch.stack((angles.sin(), angles.cos()), dim=-1).flatten(-2, -1)


class ObjectSummarizer(nn.Module):
    """Object summaries of a frame's mask-encoder value (see the module docstring).

    Args:
        value_dim: CV, channels of the value.
        embed_dim: C, channels of a summary.
        num_summaries: Q (even: half foreground, half background).
        pe_scale, pe_temperature: the positional encoding added to the projected value.
    """

    def __init__(self, value_dim: int, embed_dim: int, num_summaries: int, *, pe_scale: float, pe_temperature: float):
        super().__init__()
        self.num_summaries = num_summaries
        self.pos_enc = SinePositionalEncoding(embed_dim, scale=pe_scale, temperature=pe_temperature)
        self.input_proj = nn.Linear(value_dim, embed_dim)
        self.feature_pred = nn.Sequential(
            nn.Linear(embed_dim, embed_dim), nn.ReLU(inplace=True), nn.Linear(embed_dim, embed_dim)
        )
        self.weights_pred = nn.Sequential(
            nn.Linear(embed_dim, embed_dim), nn.ReLU(inplace=True), nn.Linear(embed_dim, num_summaries)
        )

    def forward(self, masks: Tensor, value: Tensor) -> Tensor:
        """(masks [B, N, H0, W0] in [0, 1], value [B, N, CV, h, w]) -> summaries [B, N, Q, C+1] (float32)."""
        h, w = value.shape[-2:]
        half = self.num_summaries // 2
        m = F.interpolate(masks, size=(h, w), mode="area").unsqueeze(-1)  # [B, N, h, w, 1]
        allowed = torch.cat([m.expand(-1, -1, -1, -1, half), (1 - m).expand(-1, -1, -1, -1, half)], dim=-1)
        v = self.input_proj(value.permute(0, 1, 3, 4, 2))  # [B, N, h, w, C]
        v = v + self.pos_enc.grid(h, w, dtype=v.dtype, device=v.device)  # broadcast over B, N
        with torch.autocast(device_type=v.device.type, enabled=False):
            v = v.float()
            feature = self.feature_pred(v)  # [B, N, h, w, C]
            weights = self.weights_pred(v).sigmoid() * allowed  # [B, N, h, w, Q]
            sums = torch.einsum("bkhwq,bkhwc->bkqc", weights, feature)  # [B, N, Q, C]
            area = weights.flatten(2, 3).sum(2).unsqueeze(-1)  # [B, N, Q, 1]
        return torch.cat([sums, area], dim=-1)


class _Attention(nn.Module):
    """Pre-norm multi-head attention with the positional encoding added to queries and keys (not values); the
    output is added to the normalised input. ``norm=False`` (the pixels' read of the queries) skips the norm."""

    def __init__(self, dim: int, heads: int, *, norm: bool = True, module: str = "cross_attn") -> None:
        super().__init__()
        self.module_name = module
        self.add_module(module, nn.MultiheadAttention(dim, heads, batch_first=True))
        self.norm = nn.LayerNorm(dim) if norm else nn.Identity()

    def forward(
        self, x: Tensor, mem: Tensor | None, x_pe: Tensor, mem_pe: Tensor, mask: Tensor | None = None
    ) -> Tensor:
        """(x [L, S, C], mem [L, M, C] or ``None`` for self-attention on the normalised x, their encodings, mask
        [L*heads, S, M] True = blocked) -> [L, S, C]."""
        attn: nn.MultiheadAttention = getattr(self, self.module_name)
        x = self.norm(x)
        mem = x if mem is None else mem
        out = attn(x + x_pe, mem + mem_pe, mem, attn_mask=mask, need_weights=False)[0]
        return x + out


class _FFN(nn.Module):
    """Pre-norm feed-forward with a residual on the un-normalised input."""

    def __init__(self, dim: int, ff_dim: int) -> None:
        super().__init__()
        self.linear1 = nn.Linear(dim, ff_dim)
        self.linear2 = nn.Linear(ff_dim, dim)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.linear2(F.relu(self.linear1(self.norm(x))))


class _PixelFFN(nn.Module):
    """A ``CAResBlock`` on the pixel tokens put back on their grid."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv = CAResBlock(dim, dim)

    def forward(self, tokens: Tensor, b: int, n: int, h: int, w: int) -> Tensor:
        """tokens [B*N, h*w, C] -> [B, N, C, h, w]."""
        grid = tokens.view(b * n, h, w, -1).permute(0, 3, 1, 2).contiguous()  # [B*N, C, h, w]
        out = self.conv(grid)
        return out.view(b, n, *out.shape[1:])


class _Block(nn.Module):
    def __init__(self, dim: int, heads: int, ff_dim: int) -> None:
        super().__init__()
        self.read_from_pixel = _Attention(dim, heads)
        self.self_attn = _Attention(dim, heads, module="self_attn")
        self.ffn = _FFN(dim, ff_dim)
        self.read_from_query = _Attention(dim, heads, norm=False)
        self.pixel_ffn = _PixelFFN(dim)

    def forward(
        self, query: Tensor, pixel: Tensor, query_pe: Tensor, pixel_pe: Tensor, mask: Tensor
    ) -> tuple[Tensor, Tensor]:
        """(query [B*N, Q, C], pixel [B, N, C, h, w], encodings, mask) -> (query, pixel) of the same shapes."""
        b, n, _, h, w = pixel.shape
        tokens = pixel.flatten(3, 4).flatten(0, 1).transpose(1, 2).contiguous()  # [B*N, h*w, C]
        query = self.read_from_pixel(query, tokens, query_pe, pixel_pe, mask)
        query = self.self_attn(query, None, query_pe, query_pe)
        query = self.ffn(query)
        tokens = self.read_from_query(tokens, query, pixel_pe, query_pe)
        return query, self.pixel_ffn(tokens, b, n, h, w)


class ObjectTransformer(nn.Module):
    """The object transformer (module docstring). Parameters are named as in the official ``object_transformer``.

    Args:
        embed_dim: C; num_heads; num_queries: Q; num_blocks; ff_dim: width of the query FFN.
        pe_scale, pe_temperature: the pixels' positional encoding.
    """

    def __init__(
        self,
        embed_dim: int = 256,
        *,
        num_heads: int = 8,
        num_queries: int = 16,
        num_blocks: int = 3,
        ff_dim: int = 2048,
        pe_scale: float = 32,
        pe_temperature: float = 128,
    ) -> None:
        super().__init__()
        self.embed_dim, self.num_heads, self.num_queries = embed_dim, num_heads, num_queries
        self.query_init = nn.Embedding(num_queries, embed_dim)
        self.query_emb = nn.Embedding(num_queries, embed_dim)
        self.summary_to_query_init = nn.Linear(embed_dim, embed_dim)
        self.summary_to_query_emb = nn.Linear(embed_dim, embed_dim)
        self.pixel_init_proj = GroupConv2d(embed_dim, embed_dim, kernel_size=1)
        self.pixel_emb_proj = GroupConv2d(embed_dim, embed_dim, kernel_size=1)
        self.spatial_pe = SinePositionalEncoding(embed_dim, scale=pe_scale, temperature=pe_temperature)
        self.blocks = nn.ModuleList(_Block(embed_dim, num_heads, ff_dim) for _ in range(num_blocks))
        self.mask_pred = nn.ModuleList(
            nn.Sequential(nn.ReLU(), GroupConv2d(embed_dim, 1, kernel_size=1)) for _ in range(num_blocks + 1)
        )

    def forward(
        self, pixel: Tensor, obj_memory: Tensor, *, selector: Tensor | None = None
    ) -> tuple[Tensor, list[Tensor]]:
        """Refine the pixel readout with the object queries.

        Args:
            pixel: [B, N, C, h, w] fused pixel readout.
            obj_memory: [B, N, T, Q, C+1] object memory (summed summaries with their areas; T = 1 at inference).
            selector: [B, N, 1, 1] 1 for real objects (training), or ``None``.

        Returns:
            (pixel [B, N, C, h, w], the auxiliary mask logits [B, N, h, w] before each block and after the last).
        """
        b, n, _, h, w = pixel.shape
        memory = obj_memory.view(b * n, obj_memory.shape[2], self.num_queries, self.embed_dim + 1)
        values = memory[..., :-1].sum(dim=1) / (memory[..., -1:].sum(dim=1) + 1e-4)  # [B*N, Q, C]
        query = self.query_init.weight.unsqueeze(0) + self.summary_to_query_init(values)  # [B*N, Q, C]
        query_pe = self.query_emb.weight.unsqueeze(0) + self.summary_to_query_emb(values)  # [B*N, Q, C]
        grid_pe = self.spatial_pe.grid(h, w, dtype=pixel.dtype, device=pixel.device).flatten(0, 1)  # [h*w, C]
        pixel_emb = self.pixel_emb_proj(pixel).flatten(3, 4).flatten(0, 1).transpose(1, 2)  # [B*N, h*w, C]
        pixel_pe = grid_pe.unsqueeze(0) + pixel_emb
        pixel = self.pixel_init_proj(pixel)
        aux = [self.mask_pred[0](pixel).squeeze(2)]  # [B, N, h, w]
        for i, block in enumerate(self.blocks):
            mask = self.attention_mask(aux[-1], selector)
            query, pixel = block(query, pixel, query_pe, pixel_pe, mask)
            aux.append(self.mask_pred[i + 1](pixel).squeeze(2))
        return pixel, aux

    def attention_mask(self, logits: Tensor, selector: Tensor | None) -> Tensor:
        """The queries' attention mask from auxiliary logits [B, N, h, w]: True (blocked) outside the object's
        aggregated-argmax region for the first Q/2 queries and inside it for the others; a query that would be
        blocked everywhere is not blocked at all. Returns [B*N*heads, Q, h*w]."""
        prob = logits.sigmoid() if selector is None else logits.sigmoid() * selector
        agg = aggregate_logits(prob.float())  # [B, N+1, h, w]
        foreground = (agg[:, 1:] >= agg.max(dim=1, keepdim=True)[0]).flatten(2)  # [B, N, h*w]
        half = self.num_queries // 2

        def per_head(blocked: Tensor) -> Tensor:
            return blocked[:, :, None, None].repeat(1, 1, self.num_heads, half, 1).flatten(0, 2)

        mask = torch.cat([per_head(~foreground), per_head(foreground)], dim=1)  # [B*N*heads, Q, h*w]
        mask[mask.all(dim=-1)] = False
        return mask
