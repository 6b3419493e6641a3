"""SELDnet-style CRNN (the DCASE2024 baseline architecture) with Multi-ACCDOA output and distance."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class SeldNet(nn.Module):
    """Conv blocks → bidirectional GRU → per-frame Multi-ACCDOA.

    Input features (B, F_in, frames, bands) at 20 ms hops; the conv blocks pool time by
    ``time_pool`` (product 5: 100 ms label frames) and frequency by ``freq_pool``.
    Output (B, label_frames, N, 4, C): per track and class, the ACCDOA vector (tanh, xyz) and a
    non-negative distance (ReLU) — the layout :func:`sslkit.models.adpit.adpit_loss` takes.
    """

    def __init__(
        self, in_channels: int, n_classes: int, n_bands: int = 64, n_tracks: int = 3, filters: int = 64,
        time_pool: Sequence[int] = (5, 1, 1), freq_pool: Sequence[int] = (4, 4, 2), rnn_size: int = 128, fc_size: int = 128,
        extra_channels: int = 0, extra_lags: int = 0,
    ):
        super().__init__()
        self.config = dict(in_channels=in_channels, n_classes=n_classes, n_bands=n_bands, n_tracks=n_tracks, filters=filters,
                           time_pool=list(time_pool), freq_pool=list(freq_pool), rnn_size=rnn_size, fc_size=fc_size,
                           extra_channels=extra_channels, extra_lags=extra_lags)
        self.n_classes, self.n_tracks = n_classes, n_tracks
        # Paper VI: an MLP maps each NGCC-PHAT feature channel's lags to n_bands; each is one more input channel
        self.extra_mlp = nn.Sequential(nn.Linear(extra_lags, n_bands), nn.ReLU(), nn.Linear(n_bands, n_bands)) if extra_channels else None
        c = in_channels + extra_channels
        blocks: list[nn.Module] = [nn.BatchNorm2d(c)]  # standardises each feature channel (log-mels, GCC, NGCC) as the baseline's scaler does
        for tp, fp in zip(time_pool, freq_pool):
            blocks += [nn.Conv2d(c, filters, 3, padding=1), nn.BatchNorm2d(filters), nn.ReLU(), nn.MaxPool2d((tp, fp)), nn.Dropout(0.05)]
            c = filters
        self.cnn = nn.Sequential(*blocks)
        bands = n_bands
        for fp in freq_pool:
            bands //= fp
        self.rnn = nn.GRU(filters * bands, rnn_size, num_layers=2, batch_first=True, bidirectional=True, dropout=0.05)
        self.fc = nn.Sequential(nn.Linear(2 * rnn_size, fc_size), nn.ReLU(), nn.Linear(fc_size, n_tracks * 4 * n_classes))

    def forward(self, features: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        """features (B, F_in, frames, bands); extra (B, frames, extra_channels·extra_lags) when built with them."""
        if self.extra_mlp is not None:
            b, t = features.shape[0], features.shape[2]
            lags = extra[:, :t].reshape(b, t, -1, self.config["extra_lags"])
            features = torch.cat([features, self.extra_mlp(lags).permute(0, 2, 1, 3)], dim=1)
        x = self.cnn(features)  # (B, filters, frames', bands')
        x = x.permute(0, 2, 1, 3).flatten(2)  # (B, frames', filters·bands')
        x, _ = self.rnn(x)
        out = self.fc(x).reshape(x.shape[0], x.shape[1], self.n_tracks, 4, self.n_classes)
        return torch.cat([torch.tanh(out[:, :, :, :3]), torch.relu(out[:, :, :, 3:])], dim=3)
