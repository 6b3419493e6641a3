"""wav2pos (Paper VII): a masked autoencoder over raw audio and microphone coordinates.

Tokens are an audio token per microphone (a linear projection of its N samples) and a coordinate
token per microphone (a point-wise MLP with batch norm), plus the source, which has index 0: its
coordinate is always a mask token, its audio is the known source signal when there is one (setup
1b) and a mask token otherwise. The encoder sees only the non-masked tokens; learnable mask tokens
fill the gaps before the decoder, and a pairwise message γ links the audio and coordinate tokens
of the same microphone (no positional encoding: the source estimate is invariant to the mic
order). A TDOA module pools φ(R_ij, y_i, y_j) over all ordered pairs of non-masked audio, with R_ij
from a frozen NGCC-PHAT computed in one batched call. Heads ψ predict the source and the masked
mic coordinates from [y, z, q]; a linear head reconstructs (denoises) the non-masked audio.

Two designs (``design``), one token layout and one forward pass:

- ``sslkit``: one-hidden-layer MLPs for the coordinate embedding, the messages γ, φ and the heads
  ψ; φ reads the mirror-averaged NGCC-PHAT lag *probabilities* of the mic pairs; 8 heads.
- ``reference`` (``Wav2Pos.from_size("paper")``): the authors' network layer for layer: audio
  tokens standardised per token (the reconstruction is returned in the input's scale), the
  coordinate embedding 3→64→d with two batch norms, a final LayerNorm after encoder and decoder, a
  linear decoder embedding, messages Linear-LN-GELU-Linear-LN (audio→coordinate) and Linear-LN
  (coordinate→audio), the global feature through a linear layer before the max, φ = (2d + lags)→512
  (batch norm)→512, max, →d on the raw NGCC-PHAT *logits* of both orders of every pair of known
  audio (the source's included when known), heads 3d→512→256→3 with batch norms, 4 heads, and
  N(0, 0.02) initialisation of the linear layers.

Shapes: audio (B, 1+M, N) with row 0 the source signal (zeros if unknown), coords (B, 1+M, 3)
with row 0 ignored, audio_known / coord_known (B, 1+M) bool.
"""

from __future__ import annotations

import torch
from torch import nn

from sslkit.models.ngcc import NGCCPHAT

DESIGNS = ("sslkit", "reference")
SIZES = {
    "paper": dict(dim=256, depth=4, heads=4, design="reference"),
    "sslkit": dict(dim=256, depth=4, heads=8, design="sslkit"),
}
"""``paper`` is Paper VII's network as the authors built it; ``sslkit`` is sslkit's variant of the same width and depth."""


def mlp(d_in: int, d_hidden: int, d_out: int, norm: bool = False) -> nn.Sequential:
    """One hidden layer with GELU (and batch norm over tokens when ``norm``)."""
    return deep_mlp(d_in, (d_hidden,), d_out, norm)


def deep_mlp(d_in: int, hidden: tuple[int, ...], d_out: int, norm: bool = True) -> nn.Sequential:
    """Linear (→ batch norm over tokens when ``norm``) → GELU per hidden width, then a linear output."""
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(d_in, width), *([TokenBatchNorm(width)] if norm else []), nn.GELU()]
        d_in = width
    return nn.Sequential(*layers, nn.Linear(d_in, d_out))


class TokenBatchNorm(nn.BatchNorm1d):
    """BatchNorm1d over the last dimension of (B, T, d) tokens or (B, d) vectors."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) if x.dim() == 2 else super().forward(x.transpose(1, 2)).transpose(1, 2)


def wav2pos_frame_batch(device: torch.device | str) -> int:
    """Frames per NGCC-PHAT call (inference and training features): the 55 pairs' activations of 11
    mics peak at ~1.7 GB per 16 frames (5.9 GB per 64); a CPU is no faster per frame with more, a GPU is."""
    return 64 if torch.device(device).type == "cuda" else 16


class Wav2Pos(nn.Module):
    """wav2pos with the paper's defaults (d = 256, D = 4, N = 2048 at 16 kHz).

    Args:
        n_samples: N, samples per audio token.
        dim, depth, heads: transformer width, blocks in encoder and in decoder, attention heads.
        center, scale: coordinates are normalised as (r − center) / scale inside the model.
        ngcc: NGCC-PHAT config for the TDOA module (None: no TDOA features).
        design: ``sslkit`` or ``reference`` (see the module docstring).
    """

    def __init__(
        self,
        n_samples: int = 2048,
        fs: int = 16000,
        dim: int = 256,
        depth: int = 4,
        heads: int = 8,
        center: tuple[float, float, float] = (3.5, 4.0, 1.0),
        scale: float = 4.0,
        ngcc: dict | None = None,
        design: str = "sslkit",
    ):
        super().__init__()
        if design not in DESIGNS:
            raise ValueError(f"design must be one of {DESIGNS}, got {design!r}")
        self.config = dict(n_samples=n_samples, fs=fs, dim=dim, depth=depth, heads=heads, center=list(center), scale=scale, ngcc=ngcc, design=design)
        self.n_samples, self.fs, self.design = n_samples, fs, design
        reference = design == "reference"
        self.register_buffer("center", torch.tensor(center, dtype=torch.float32), persistent=False)
        self.scale = scale
        self.audio_embed = nn.Linear(n_samples, dim)
        self.coord_embed = nn.Sequential(deep_mlp(3, (64,), dim), TokenBatchNorm(dim)) if reference else mlp(3, dim, dim, norm=True)
        self.modality = nn.ParameterDict({k: nn.Parameter(torch.randn(dim) * 0.02) for k in ("enc_audio", "enc_coord", "dec_audio", "dec_coord")})
        self.mask_token = nn.ParameterDict({k: nn.Parameter(torch.randn(dim) * 0.02) for k in ("audio", "coord", "source")})

        def blocks() -> nn.TransformerEncoder:
            layer = nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout=0.0, activation="gelu", batch_first=True, norm_first=True)
            return nn.TransformerEncoder(layer, depth, norm=nn.LayerNorm(dim) if reference else None, enable_nested_tensor=False)

        self.encoder, self.decoder = blocks(), blocks()
        self.decoder_embed = nn.Linear(dim, dim) if reference else nn.Identity()
        self.global_proj = nn.Linear(dim, dim) if reference else nn.Identity()
        if reference:
            self.gamma_a2c = nn.Sequential(nn.Linear(dim, dim), nn.LayerNorm(dim), nn.GELU(), nn.Linear(dim, dim), nn.LayerNorm(dim))
            self.gamma_c2a = nn.Sequential(nn.Linear(dim, dim), nn.LayerNorm(dim))
        else:
            self.gamma_a2c, self.gamma_c2a = mlp(dim, dim, dim), mlp(dim, dim, dim)
        self.audio_head = nn.Linear(dim, n_samples)
        self.ngcc = NGCCPHAT(**ngcc) if ngcc else None
        if self.ngcc is not None:
            self.ngcc.requires_grad_(False)
            self.phi = deep_mlp(self.ngcc.n_lags + 2 * dim, (512,), 512) if reference else mlp(self.ngcc.n_lags + 2 * dim, dim, dim)
            self.tdoa_proj = nn.Linear(512, dim) if reference else nn.Identity()
        self.psi_source = deep_mlp(3 * dim, (512, 256), 3) if reference else mlp(3 * dim, dim, 3)
        self.psi_mic = deep_mlp(3 * dim, (512, 256), 3) if reference else mlp(3 * dim, dim, 3)
        if reference:
            self.apply(reference_init)

    @classmethod
    def from_size(cls, size: str, n_samples: int = 2048, fs: int = 16000, center: tuple[float, float, float] = (3.5, 4.0, 1.0),
                  scale: float = 4.0, ngcc: dict | None = None) -> Wav2Pos:
        """A network of a named size (``SIZES``): ``paper`` is the authors' reference design."""
        if size not in SIZES:
            raise ValueError(f"size must be one of {', '.join(SIZES)}, got {size!r}")
        return cls(n_samples, fs, center=center, scale=scale, ngcc=ngcc, **SIZES[size])

    @property
    def first_pair_token(self) -> int:
        """The first token row that the TDOA module pairs: 0 (the source's audio too) or 1 (mics only)."""
        return 0 if self.design == "reference" else 1

    def forward(
        self, audio: torch.Tensor, coords: torch.Tensor, audio_known: torch.Tensor, coord_known: torch.Tensor,
        pair_feats: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Source (B, 3), all mic coordinates (B, M, 3) and reconstructed audio (B, 1+M, N).

        ``pair_feats``: ``pair_features(audio)``, when the caller has them already (the NGCC-PHAT is
        frozen, so training computes them once).
        """
        b, m1, _ = audio.shape
        coord_known = coord_known.clone()
        coord_known[:, 0] = False  # the source position is what we predict
        if self.design == "reference":
            mean, std = audio.mean(-1, keepdim=True), audio.std(-1, keepdim=True).clamp_min(1e-8)
        else:
            mean, std = torch.zeros_like(audio[..., :1]), torch.ones_like(audio[..., :1])
        x_audio = self.audio_embed((audio - mean) / std) + self.modality["enc_audio"]
        x_coord = self.coord_embed((coords - self.center) / self.scale) + self.modality["enc_coord"]
        tokens = torch.cat([x_audio, x_coord], dim=1)  # (B, 2(1+M), d)
        known = torch.cat([audio_known, coord_known], dim=1)
        encoded = self.decoder_embed(self.encoder(tokens, src_key_padding_mask=~known))
        enc_audio, enc_coord = encoded[:, :m1], encoded[:, m1:]
        z = self.global_proj(encoded).masked_fill(~known[..., None], -torch.inf).amax(dim=1)  # (B, d) max over non-masked tokens
        t_audio = torch.where(audio_known[..., None], enc_audio, self.mask_token["audio"])
        coord_fill = torch.cat([self.mask_token["source"].expand(b, 1, -1), self.mask_token["coord"].expand(b, m1 - 1, -1)], dim=1)
        t_coord = torch.where(coord_known[..., None], enc_coord, coord_fill)
        y_audio = t_audio + self.modality["dec_audio"] + self.gamma_c2a(t_coord)
        y_coord = t_coord + self.modality["dec_coord"] + self.gamma_a2c(t_audio)
        decoded = self.decoder(torch.cat([y_audio, y_coord], dim=1))
        dec_audio, dec_coord = decoded[:, :m1], decoded[:, m1:]
        if self.ngcc is not None:
            q = self.tdoa_feature(self.pair_features(audio) if pair_feats is None else pair_feats, audio_known, dec_coord)
        else:
            q = torch.zeros_like(z)
        head_in = torch.cat([dec_coord, z[:, None].expand(-1, m1, -1), q[:, None].expand(-1, m1, -1)], dim=-1)
        source = self.psi_source(head_in[:, 0]) * self.scale + self.center
        mics = self.psi_mic(head_in[:, 1:]) * self.scale + self.center
        return {"source": source, "mics": mics, "audio": self.audio_head(dec_audio) * std + mean}

    def pair_features(self, audio: torch.Tensor) -> torch.Tensor:
        """What the TDOA module reads, from one batched NGCC-PHAT call with each channel filtered once,
        for the pairs i < j of token rows from ``first_pair_token`` (``upper_pairs`` order):

        - sslkit: the lag distributions R_ij, averaged with the mirrored distributions of (j, i), whose
          correlations are those of (i, j) reversed; so R_ji = R_ij mirrored exactly and the source
          estimate does not depend on the mic order. → (B, P, lags)
        - reference: the logits of (i, j) and of (j, i). → (B, P, 2, lags)
        """
        pairs = upper_pairs(audio.shape[1] - 1, audio.device, self.first_pair_token)
        with torch.no_grad():
            if self.design == "sslkit":
                return self.ngcc.symmetric_pair_probabilities(audio, pairs)[:, :, 0]
            corr = self.ngcc.pair_correlations(audio, pairs)
            return torch.stack(self.ngcc.logits_from_correlations(torch.cat([corr, corr.flip(-1)], dim=1))[:, :, 0].chunk(2, dim=1), dim=2)

    def lag_distributions(self, pair_feats: torch.Tensor) -> torch.Tensor:
        """The mirror-symmetric lag distributions of the M(M−1)/2 mic pairs (B, P, lags) from ``pair_features``."""
        if self.design == "sslkit":
            return pair_feats
        m = int(round((1 + (1 + 8 * pair_feats.shape[1]) ** 0.5) / 2)) - 1  # P = (1+M)M/2 token pairs
        mic_pairs = pair_feats[:, m:].float().softmax(-1)  # the first M pairs hold the source's row
        return (mic_pairs[:, :, 0] + mic_pairs[:, :, 1].flip(-1)) / 2

    def tdoa_feature(self, pair_feats: torch.Tensor, audio_known: torch.Tensor, dec_coord: torch.Tensor) -> torch.Tensor:
        """q = max over ordered pairs (i ≠ j) of known audio of φ(R_ij, y_i, y_j) (through ``tdoa_proj``). → (B, d)

        sslkit's R_ji is R_ij mirrored (see ``pair_features``); the reference has both orders' logits.
        """
        upper = upper_pairs(dec_coord.shape[1] - 1, dec_coord.device, self.first_pair_token)
        pairs = torch.cat([upper, upper.flip(1)])  # (P, 2): (i, j) then (j, i)
        if self.design == "sslkit":
            r = torch.cat([pair_feats, pair_feats.flip(-1)], dim=1)
        else:
            r = torch.cat([pair_feats[:, :, 0], pair_feats[:, :, 1]], dim=1)
        feats = self.phi(torch.cat([r.to(dec_coord.dtype), dec_coord[:, pairs[:, 0]], dec_coord[:, pairs[:, 1]]], dim=-1))  # (B, 2P, ·)
        valid = audio_known[:, pairs[:, 0]] & audio_known[:, pairs[:, 1]]
        return self.tdoa_proj(feats.masked_fill(~valid[..., None], -torch.inf).amax(dim=1).nan_to_num(neginf=0.0))


def reference_init(module: nn.Module) -> None:
    """The reference's initialisation: linear weights N(0, 0.02) and zero biases (attention projections included)."""
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.MultiheadAttention):
        nn.init.normal_(module.in_proj_weight, std=0.02)
        nn.init.zeros_(module.in_proj_bias)


def upper_pairs(m: int, device: torch.device | str = "cpu", first: int = 1) -> torch.Tensor:
    """Token rows (i, j), i < j, of the pairs of rows ``first``..M (row 0 is the source, rows 1..M the
    mics). → (P, 2)"""
    n = m + 1 - first
    return torch.triu_indices(n, n, offset=1, device=device).T + first


def wav2pos_loss(
    out: dict[str, torch.Tensor], audio_clean: torch.Tensor, source: torch.Tensor, mics: torch.Tensor,
    audio_known: torch.Tensor, coord_known: torch.Tensor, weights: tuple[float, float, float] = (0.1, 1.0, 1.0),
) -> torch.Tensor:
    """Equation (3): λ_audio · MSE on non-masked (clean) audio + λ_source · ‖r̂₀ − r₀‖² + λ_mic · masked mic error.

    audio_clean (B, 1+M, N); source (B, 3); mics (B, M, 3); masks (B, 1+M).
    """
    lam_audio, lam_source, lam_mic = weights
    audio_err = ((out["audio"] - audio_clean) ** 2).sum(-1)  # (B, 1+M)
    audio_term = (audio_err * audio_known).sum(1) / audio_known.sum(1).clamp(min=1)
    source_term = ((out["source"] - source) ** 2).sum(-1)
    masked_mics = ~coord_known[:, 1:]
    mic_err = ((out["mics"] - mics) ** 2).sum(-1)
    mic_term = (mic_err * masked_mics).sum(1) / masked_mics.sum(1).clamp(min=1)
    return (lam_audio * audio_term + lam_source * source_term + lam_mic * mic_term).mean()


MIN_KNOWN_MICS = 5
"""Paper VII's |S ∩ R| ≥ 5: mics with both audio and position known, in training masks and inference views."""


def view_masks(audio_known: torch.Tensor, coord_known: torch.Tensor, views: int, generator: torch.Generator,
               min_known: int = MIN_KNOWN_MICS, hide: int = 2) -> torch.Tensor:
    """``views`` variants of ``audio_known`` (B, 1+M) that each hide the audio of ``hide`` random mics
    with known audio and position, fewer where that would leave under ``min_known`` such mics (as
    the training masks keep). → (V, B, 1+M)"""
    both = audio_known & coord_known
    both[:, 0] = False  # the source token is never a mic
    scores = torch.rand(views, *both.shape, generator=generator).to(both.device).masked_fill(~both, 2.0)
    rank = scores.argsort(-1).argsort(-1)  # candidates rank first, in random order
    n_hidden = (both.sum(1, keepdim=True) - min_known).clamp(0, hide)  # (B, 1)
    return audio_known & ~(rank < n_hidden)


VIEW_SPREAD_SCALE_M = 0.2
"""Confidence exp(−spread / scale): 0.5 when the masked views scatter 14 cm around the estimate."""


def predict_with_views(model: Wav2Pos, audio: torch.Tensor, coords: torch.Tensor, audio_known: torch.Tensor,
                       coord_known: torch.Tensor, views: int, generator: torch.Generator, precision: str = "float32") -> dict[str, torch.Tensor]:
    """The model's outputs for the full input, with a confidence from ``views`` extra inputs that
    each hide some mics' audio (``view_masks``), all in one batched pass over one NGCC-PHAT call:
    exp(−spread / VIEW_SPREAD_SCALE_M), spread = the views' mean distance from the full-input
    source estimate (docs/methods.md compares it with the lag fit's). No views: confidence 1.
    ``precision`` bfloat16 runs the NGCC-PHAT's convolutions in bfloat16 (the rest stays float32).
    → source (B, 3), confidence (B,), mics (B, M, 3), pair_probs (B, M(M−1)/2, lags) or None"""
    feats = None
    if model.ngcc is not None:
        with torch.autocast(audio.device.type, dtype=torch.bfloat16, enabled=precision == "bfloat16"):
            feats = model.pair_features(audio).float()
    masks = torch.cat([audio_known[None], view_masks(audio_known, coord_known, views, generator)])  # (V+1, B, 1+M)

    def repeat(x: torch.Tensor) -> torch.Tensor:
        return x.repeat(len(masks), *[1] * (x.dim() - 1))

    out = model(repeat(audio), repeat(coords), masks.flatten(0, 1), repeat(coord_known), None if feats is None else repeat(feats))
    sources = out["source"].unflatten(0, (len(masks), -1))  # (V+1, B, 3)
    spread = (sources[1:] - sources[0]).norm(dim=-1).mean(0) if views else torch.zeros(len(audio), device=audio.device)
    return {"source": sources[0], "confidence": torch.exp(-spread / VIEW_SPREAD_SCALE_M), "mics": out["mics"][: len(audio)],
            "pair_probs": None if feats is None else model.lag_distributions(feats)}


def random_masks(b: int, m: int, generator: torch.Generator, min_known: int = MIN_KNOWN_MICS, p_mask: float = 0.3) -> tuple[torch.Tensor, torch.Tensor]:
    """Paper VII's random masking: never both audio and coordinate of one mic, |S ∩ R| ≥ min_known.

    Returns audio_known, coord_known of shape (B, 1+M): row 0 (the source) has unknown audio and
    coordinate. Each mic loses its audio or its coordinate (never both) with probability ``p_mask``,
    except ``min_known`` randomly chosen mics that keep both.
    """
    masked = torch.rand(b, m, generator=generator) < p_mask
    which = torch.rand(b, m, generator=generator) < 0.5  # True: mask audio, False: mask coordinate
    keep = torch.argsort(torch.rand(b, m, generator=generator), dim=1)[:, : min(min_known, m)]
    masked.scatter_(1, keep, False)
    audio_known = torch.cat([torch.zeros(b, 1, dtype=torch.bool), ~(masked & which)], dim=1)
    coord_known = torch.cat([torch.zeros(b, 1, dtype=torch.bool), ~(masked & ~which)], dim=1)
    return audio_known, coord_known
