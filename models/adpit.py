"""The ADPIT loss family for Multi-ACCDOA outputs (Gulin & Åström, IPIN-WiP 2024).

ADPIT (auxiliary duplicating permutation invariant training, Shimada et al.) scores N output
tracks per frame and class against the M ≤ N events of that class, duplicating events into
spare tracks, and keeps the best of all such sequences. Targets use the DCASE2024 baseline's
*dummy-track* layout: groups A, B, C, … for M = 1, 2, 3, … events, group M holding tracks
M0 … M(M−1) (A0, B0, B1, C0, C1, C2 for N = 3), each with an activity channel then the axes.
Only the group of the scope's actual M is non-zero (the baseline's labels always are so); the
faster variants rely on it and refuse targets with several active groups in one scope.

Variants, all giving the same loss and gradient (``adpit_loss(..., variant=...)``). In a scope
without events every sequence scores the tracks against no event, so the faster variants gather
the scopes with events and add the rest as one sum (a multiple of Σ o², ``PairLoss.silent_weight``):

- ``baseline``: the DCASE2024 computation, generalised to any N: every sequence of every group,
  each padded with the first sequence of every other group (13 sequences for N = 3).
- ``overlay``: ARMPIT optimal overlay: row r sums one sequence of each group, so only
  max_M K(N, M) rows are needed (6 for N = 3, Table 3).
- ``distance-first``: ARMPIT: pair losses once, sequences as sums of them. The paper's count is
  one loss per distinct (track, dummy-event sum) pair of the overlay rows (12 for N = 3); with one
  active group per scope a sum holds at most one event, so the losses of every track against every
  dummy track (an N × D table of contractions over the axes) give all of them.
- ``bradpit``: branch on M: the scopes of each M are scored on their own K(N, M) sequences over
  N × M pair losses (one sequence for M = 1).
- ``brute-force``: enumerates all K̂(N, M) sequences scope by scope (test reference only).

Shapes: ``output`` (B, T, N, A, C); ``target`` (B, T, N(N+1)/2, 1+A, C).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from functools import cache
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

PAIR_LOSSES = ("mse", "ce", "mse-reciprocal-distance")
"""``mse``, ``ce`` (class logits), and ``mse-reciprocal-distance``: the MSE with the distance axis's term
(the last of 4 axes) divided by the target distance (Paper VI), where the target has one."""


# ---------------------------------------------------------------------------------------------
# Counting (paper section 3.1)
# ---------------------------------------------------------------------------------------------
def stirling2(n: int, k: int) -> int:
    """Stirling number of the second kind S(n, k): partitions of n items into k non-empty sets."""
    return sum((-1) ** (k - i) * math.comb(k, i) * i**n for i in range(k + 1)) // math.factorial(k)


def sequence_count(n_tracks: int, n_events: int) -> int:
    """K(N, M): the exact number of distinct ADPIT sequences (eqs. 2–5 of the paper)."""
    if n_events == 0:
        return 1
    if n_events > n_tracks:
        return math.perm(n_events, n_tracks)
    return math.factorial(n_events) * stirling2(n_tracks, n_events)


def sequence_upper_bound(n_tracks: int, n_events: int) -> int:
    """K̂(N, M) = NPM · M^(N−M): the naive count with aliased duplicates (eq. 1)."""
    if n_events == 0:
        return 1
    return math.perm(n_tracks, n_events) * n_events ** (n_tracks - n_events)


MAX_TRACKS = 6
"""Most tracks any variant enumerates: N = 7 has 47 293 baseline rows and K(7, M) up to 191 520 sequences."""


def n_dummy_tracks(n_tracks: int) -> int:
    return n_tracks * (n_tracks + 1) // 2


def dummy_index(n_events: int, event: int) -> int:
    """Index of dummy track ``event`` of group M = ``n_events`` (A0 = 0, B0 = 1, B1 = 2, C0 = 3…)."""
    return n_events * (n_events - 1) // 2 + event


@cache
def group_sequences(n_tracks: int, n_events: int) -> tuple[tuple[int, ...], ...]:
    """All K(N, M) distinct sequences of group M: maps of tracks onto events using every event.

    Lexicographic order, so the first is (0, …, 0, 1, …, M−1) (A0A0A0, B0B0B1, C0C1C2 for N = 3),
    the sequence the baseline pads with.
    """
    return tuple(s for s in itertools.product(range(n_events), repeat=n_tracks) if len(set(s)) == n_events)


# ---------------------------------------------------------------------------------------------
# Candidate rows: each row assigns to every track a set of dummy tracks whose sum is its target
# ---------------------------------------------------------------------------------------------
Row = tuple[frozenset, ...]


@cache
def baseline_rows(n_tracks: int) -> tuple[Row, ...]:
    """The baseline's candidates: each sequence of each group plus the first sequence of the others."""
    first = {m: group_sequences(n_tracks, m)[0] for m in range(1, n_tracks + 1)}
    rows = []
    for m in range(1, n_tracks + 1):
        for seq in group_sequences(n_tracks, m):
            chosen = {**first, m: seq}
            rows.append(tuple(frozenset(dummy_index(g, chosen[g][n]) for g in chosen) for n in range(n_tracks)))
    return tuple(rows)


@cache
def overlay_rows(n_tracks: int) -> tuple[Row, ...]:
    """ARMPIT optimal overlay: max_M K(N, M) rows, each summing one sequence of every group.

    Every sequence of every group appears in at least one row. Groups are laid over the rows
    greedily so that rows share (track, dummy-sum) pairs, which distance-first reuses; for
    N = 3 this reaches the paper's 12 distinct pairs.
    """
    groups = sorted(range(1, n_tracks + 1), key=lambda m: -sequence_count(n_tracks, m))
    n_rows = sequence_count(n_tracks, groups[0])
    n_dummy = n_dummy_tracks(n_tracks)
    tracks = np.arange(n_tracks)
    rows = np.zeros((n_rows, n_tracks, 0), dtype=np.int64)  # dummy track of each group, per row and track
    for m in groups:
        seqs = np.array(group_sequences(n_tracks, m)) + dummy_index(m, 0)  # (K_m, N) dummy indices
        # a (track, partial dummy-sum) pair gets an integer id; extending it by dummy d gives id·D + d
        _, prefix_id = np.unique(rows.reshape(n_rows * n_tracks, -1), axis=0, return_inverse=True)
        prefix_id = prefix_id.reshape(n_rows, n_tracks)
        seen = np.zeros((n_tracks, (prefix_id.max() + 1) * n_dummy), dtype=bool)
        unused = np.ones(len(seqs), dtype=bool)
        choice = np.empty(n_rows, dtype=np.int64)
        for r in range(n_rows):
            keys = prefix_id[r] * n_dummy + seqs  # (K_m, N)
            cost = (~seen[tracks, keys]).sum(axis=1) * 2 + ~unused  # fewest new pairs, then unused first
            if unused.sum() >= n_rows - r:  # the remaining rows must cover every unused sequence
                cost = np.where(unused, cost, np.iinfo(np.int64).max)
            choice[r] = int(np.argmin(cost))
            unused[choice[r]] = False
            seen[tracks, keys[choice[r]]] = True
        rows = np.concatenate([rows, seqs[choice][:, :, None]], axis=2)
    return tuple(tuple(frozenset(int(d) for d in rows[r, n]) for n in range(n_tracks)) for r in range(n_rows))


@cache
def row_selection(rows: tuple[Row, ...], n_dummy: int) -> torch.Tensor:
    """0/1 tensor (K, N, D): entry [k, n, d] = 1 if dummy track d is summed into track n of row k."""
    sel = torch.zeros(len(rows), len(rows[0]), n_dummy, dtype=torch.float64)
    for k, row in enumerate(rows):
        for n, dummies in enumerate(row):
            sel[k, n, list(dummies)] = 1
    return sel


@cache
def distinct_pairs(rows: tuple[Row, ...], n_dummy: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Distinct (track, dummy-sum) pairs of ``rows``.

    Returns:
        track: (P,) track index of each pair.
        pair_sum: (P, D) 0/1 dummy tracks summed into each pair's target.
        counts: (P, K) how often row k uses pair p (rows are sums of their pairs).
    """
    index: dict[tuple[int, frozenset], int] = {}
    for row in rows:
        for n, dummies in enumerate(row):
            index.setdefault((n, dummies), len(index))
    track = torch.tensor([n for n, _ in index], dtype=torch.long)
    pair_sum = torch.zeros(len(index), n_dummy, dtype=torch.float64)
    counts = torch.zeros(len(index), len(rows), dtype=torch.float64)
    for (n, dummies), p in index.items():
        pair_sum[p, list(dummies)] = 1
    for k, row in enumerate(rows):
        for n, dummies in enumerate(row):
            counts[index[(n, dummies)], k] += 1
    return track, pair_sum, counts


# ---------------------------------------------------------------------------------------------
# Pair losses: separable over tracks, reduce over the axis dimension (dim -2 of (..., A, C))
# ---------------------------------------------------------------------------------------------
def mse_pair(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error over axes. Shapes (..., A, C) → (..., C)."""
    return ((output - target) ** 2).mean(dim=-2)


def ce_pair(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of target distributions over the A classes against logits. (..., A, C) → (..., C)."""
    return -(target * F.log_softmax(output, dim=-2)).sum(dim=-2)


def reciprocal_distance_mse_pair(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MSE over axes (x, y, z, distance) with the distance term weighted by 1 / target distance
    (1 where the target has no event, distance 0). Shapes (..., 4, C) → (..., C)."""
    return (distance_weights(target) * (output - target) ** 2).mean(dim=-2)


def distance_weights(vectors: torch.Tensor, dim: int = -2) -> torch.Tensor:
    """Per-axis weights of :func:`reciprocal_distance_mse_pair` for targets with their 4 axes along
    ``dim``: 1, and 1 / distance on the distance axis where there is an event."""
    distance = vectors.narrow(dim, 3, 1)
    inverse = torch.where(distance > 0, 1.0 / distance.clamp(min=torch.finfo(distance.dtype).tiny), torch.ones_like(distance))
    return torch.cat([torch.ones_like(vectors.narrow(dim, 0, 3)), inverse], dim=dim)


def mse_table(output: torch.Tensor, vectors: torch.Tensor, weighted: bool = False) -> torch.Tensor:
    """(Weighted) MSE of every track against every dummy track of S scopes, less that against no
    event, as contractions over the axes: Σₐ wₐ(oₐ − eₐ)² − Σₐ oₐ² = Σₐ (wₐ − 1)oₐ² − 2 Σₐ wₐeₐoₐ + Σₐ wₐeₐ²
    (over A), w = 1 without ``weighted``.

    output (S, N, A), vectors (S, D, A) → (S, N, D).
    """
    weight = distance_weights(vectors, dim=-1) if weighted else None
    scaled = vectors if weight is None else weight * vectors
    gain = (scaled * vectors).sum(-1)[:, None, :] - 2 * pairwise_dots(output, scaled)
    if weight is not None:
        gain = gain + pairwise_dots(output.square(), weight - 1)
    return gain / output.shape[-1]


def ce_table(output: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of every track's logits against every dummy track's distribution of S scopes
    (less that against none, 0). output (S, N, A), vectors (S, D, A) → (S, N, D)."""
    return -pairwise_dots(F.log_softmax(output, dim=-1), vectors)


def pairwise_dots(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Dot products of every row of a with every row of b, scope by scope: (S, N, A), (S, D, A) →
    (S, N, D). Broadcast and summed: batched matrix products of a few rows each cost more."""
    return (a[:, :, None, :] * b[:, None, :, :]).sum(-1)


def scope_vectors(target: torch.Tensor) -> torch.Tensor:
    """Activity × axes of the dummy tracks of gathered scopes: (S, D, 1+A) → (S, D, A)."""
    return target[..., :1] * target[..., 1:]


class PairLoss:
    """A pair loss: called on (output, target) pairs (..., A, C) → (..., C); as ``table``, every track
    against every dummy track of gathered scopes (S, N, A) and (S, D, A), less its loss against no
    event. A track's loss against no event is ``silent_weight``·Σₐ oₐ² (the table-based variants add
    the tables' gains to that sum over all tracks)."""

    def __init__(self, pair: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], table: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                 silent_weight: Callable[[int], float]):
        self.pair, self.table, self.silent_weight = pair, table, silent_weight

    def __call__(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.pair(output, target)


def mean_over_axes(n_axes: int) -> float:
    """The MSE against no event is Σₐ oₐ² / A."""
    return 1.0 / n_axes


PAIR_LOSS_FUNCTIONS = {
    "mse": PairLoss(mse_pair, mse_table, mean_over_axes),
    "ce": PairLoss(ce_pair, ce_table, lambda n_axes: 0.0),  # no event: no cross-entropy
    "mse-reciprocal-distance": PairLoss(reciprocal_distance_mse_pair, lambda o, v: mse_table(o, v, weighted=True), mean_over_axes),
}


def _pair_fn(pair_loss: str) -> PairLoss:
    if pair_loss not in PAIR_LOSSES:
        raise ValueError(f"pair_loss must be one of {PAIR_LOSSES}, got {pair_loss!r}")
    return PAIR_LOSS_FUNCTIONS[pair_loss]


def target_vectors(target: torch.Tensor) -> torch.Tensor:
    """Activity × axes of each dummy track. (B, T, D, 1+A, C) → (B, T, D, A, C)."""
    return target[:, :, :, :1] * target[:, :, :, 1:]


def check_track_count(n_tracks: int) -> None:
    """ADPIT enumerates sequences of N tracks (K(N, M) grows like N!): N must be in [1, MAX_TRACKS]."""
    if not 1 <= n_tracks <= MAX_TRACKS:
        rows = sum(sequence_count(n_tracks, m) for m in range(1, n_tracks + 1)) if n_tracks <= 2 * MAX_TRACKS else None
        count = f"{rows}" if rows is not None else "astronomically many"
        raise ValueError(f"ADPIT supports 1 to {MAX_TRACKS} tracks; N = {n_tracks} has {count} candidate sequences to enumerate")


def _n_tracks(output: torch.Tensor, target: torch.Tensor) -> int:
    if output.dim() != 5 or target.dim() != 5:
        raise ValueError("output must be (B, T, N, A, C) and target (B, T, N(N+1)/2, 1+A, C)")
    n = output.shape[2]
    check_track_count(n)
    if target.shape[2] != n_dummy_tracks(n) or target.shape[3] != output.shape[3] + 1:
        raise ValueError(f"target shape {tuple(target.shape)} does not fit output {tuple(output.shape)}")
    return n


# ---------------------------------------------------------------------------------------------
# Variants
# ---------------------------------------------------------------------------------------------
def group_activity(activity: torch.Tensor) -> torch.Tensor:
    """Which dummy-track groups have an active track: dummy-track activity (..., D) → (..., N) bool."""
    return (activity > 0.5).to(activity.dtype) @ group_membership(activity.shape[-1], activity.dtype, activity.device) > 0


@cache
def group_membership(n_dummy: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """0/1 (D, N): dummy track d belongs to group m."""
    n = round((math.sqrt(8 * n_dummy + 1) - 1) / 2)
    membership = torch.zeros(n_dummy, n, dtype=dtype, device=device)
    for m in range(1, n + 1):
        membership[dummy_index(m, 0) : dummy_index(m, 0) + m, m - 1] = 1
    return membership


class EventScopes(NamedTuple):
    """The S scopes (item, frame, class) of a target that hold events: where they are (item·T + frame,
    and class, (S,) each), their dummy tracks (S, D, 1+A) and their active groups (S, N)."""

    item_frame: torch.Tensor
    cls: torch.Tensor
    target: torch.Tensor
    groups: torch.Tensor

    def split(self, output: torch.Tensor, pair: PairLoss) -> tuple[torch.Tensor, torch.Tensor]:
        """Every track's loss against no event, summed over the whole output (B, T, N, A, C) → (),
        and the scopes' tracks (S, N, A)."""
        return SilentAndScopes.apply(output, self.item_frame, self.cls, pair.silent_weight(output.shape[3]))

    def event_counts(self) -> torch.Tensor:
        """M, the events of each scope (its active group). → (S,)"""
        return (self.groups * torch.arange(1, self.groups.shape[1] + 1, device=self.groups.device)).amax(dim=1)


class SilentAndScopes(torch.autograd.Function):
    """w·Σ o² over an output (B, T, N, A, C), and the output at distinct scopes (item·T + frame,
    class) → ((), (S, N, A)). One function, so that the backward pass writes the gradient once:
    2w·o everywhere, plus the scopes' gradients added in place (the scopes are distinct)."""

    @staticmethod
    def forward(ctx, output: torch.Tensor, item_frame: torch.Tensor, cls: torch.Tensor, weight: float):
        ctx.weight = weight
        ctx.save_for_backward(output, item_frame, cls)
        with torch.autocast(output.device.type, enabled=False):  # half precision overflows: float32 at least
            flat = output.reshape(-1).to(torch.promote_types(output.dtype, torch.float32))
            squares = flat @ flat
        return weight * squares, output.flatten(0, 1)[item_frame, :, :, cls]

    @staticmethod
    def backward(ctx, grad_silent: torch.Tensor, grad_scoped: torch.Tensor):
        output, item_frame, cls = ctx.saved_tensors
        grad = (output * (2 * ctx.weight * grad_silent) if ctx.weight else torch.zeros_like(output)).flatten(0, 1)
        grad[item_frame, :, :, cls] += grad_scoped
        return grad.reshape(output.shape), None, None, None


def dummy_track_maximum(activity: torch.Tensor) -> torch.Tensor:
    """The largest activity over the dummy tracks: (B, T, D, C) → (B, T, C), in place over the D
    slices (a reduction over that strided middle axis costs twice as much)."""
    largest = activity[:, :, 0].clone()
    for d in range(1, activity.shape[2]):
        torch.maximum(largest, activity[:, :, d], out=largest)
    return largest


def event_scopes(target: torch.Tensor) -> EventScopes:
    """The scopes of ``target`` with an active dummy track.

    ValueError when a scope has active dummy tracks in more than one group: the overlay,
    distance-first and BRADPIT variants equal the baseline only when at most one group is active
    (as in the DCASE2024 baseline's labels).
    """
    item_frame, cls = (dummy_track_maximum(target[:, :, :, 0]) > 0.5).flatten(0, 1).nonzero(as_tuple=True)
    scoped = target.flatten(0, 1)[item_frame, :, :, cls]  # (S, D, 1+A)
    groups = group_activity(scoped[..., 0])
    count = groups.sum(dim=1)
    if bool((count > 1).any()):
        i = int((count > 1).nonzero()[0])
        item, frame = divmod(int(item_frame[i]), target.shape[1])
        raise ValueError(f"target item {item}, frame {frame}, class {int(cls[i])} has events in {int(count[i])} dummy-track groups; "
                         "the faster ADPIT variants need at most one per scope (the DCASE2024 label layout): use variant='baseline'")
    return EventScopes(item_frame, cls, scoped, groups)


def _rows_loss(output: torch.Tensor, target: torch.Tensor, rows: tuple[Row, ...], pair: Callable) -> torch.Tensor:
    """Materialise every row's target and take the best row per scope (baseline and overlay)."""
    sel = row_selection(rows, target.shape[2]).to(output)
    seq_targets = torch.einsum("knd,btdac->btknac", sel, target_vectors(target))  # (B, T, K, N, A, C)
    losses = pair(output[:, :, None], seq_targets).mean(dim=3)  # (B, T, K, C)
    return losses.min(dim=2).values.mean()


def baseline_loss(output: torch.Tensor, target: torch.Tensor, pair: Callable) -> torch.Tensor:
    return _rows_loss(output, target, baseline_rows(_n_tracks(output, target)), pair)


def overlay_loss(output: torch.Tensor, target: torch.Tensor, pair: PairLoss) -> torch.Tensor:
    """The overlay's rows materialised for the scopes with events, the best row per scope; a scope
    without events scores every row alike, as the tracks' losses against no event (``pair.silent_weight``)."""
    n = _n_tracks(output, target)
    scopes = event_scopes(target)
    silent_sum, scoped = scopes.split(output, pair)
    scoped = scoped[..., None]  # (S, N, A, 1): the pair losses' (..., A, C) layout
    rows = torch.einsum("knd,sda->skna", row_selection(overlay_rows(n), target.shape[2]).to(output),
                        scope_vectors(scopes.target))[..., None]  # (S, K, N, A, 1)
    best = pair(scoped[:, None], rows).sum(dim=2).min(dim=1).values  # (S, 1): Σ over tracks of the best row
    silent = pair(scoped, torch.zeros_like(scoped)).sum(dim=1)  # (S, 1)
    return (silent_sum + (best - silent).sum()) / (n * scope_count(output))


def distance_first_loss(output: torch.Tensor, target: torch.Tensor, pair: PairLoss) -> torch.Tensor:
    """Pair losses first, then the overlay rows as sums of them.

    With one active group per scope, the target of a (track, dummy-sum) pair is one dummy track or
    nothing, so its loss is Z(track) + Σ over the pair's dummy tracks d of (P(track, d) − Z(track)),
    with P the loss against dummy track d and Z against no event. The N × D table P − Z comes from
    contractions over the axes (``pair.table``) and each row is one product of it with the row's 0/1
    selection; scopes without events skip both (every row is Σ Z there).
    """
    n = _n_tracks(output, target)
    scopes = event_scopes(target)
    silent_sum, scoped = scopes.split(output, pair)
    gain = pair.table(scoped, scope_vectors(scopes.target))  # (S, N, D)
    selection = row_selection(overlay_rows(n), target.shape[2]).to(output).flatten(1)  # (K, N·D)
    row_gains = gain.flatten(1) @ selection.T  # (S, K)
    return (silent_sum + row_gains.min(dim=-1).values.sum()) / (n * scope_count(output))


def scope_event_counts(target: torch.Tensor) -> torch.Tensor:
    """M per scope: the largest group whose first dummy track is active. (B, T, D, 1+A, C) → (B, T, C)."""
    n = round((math.sqrt(8 * target.shape[2] + 1) - 1) / 2)
    firsts = torch.tensor([dummy_index(m, 0) for m in range(1, n + 1)], device=target.device)
    active = target[:, :, firsts, 0] > 0.5  # (B, T, N, C)
    m_values = torch.arange(1, n + 1, device=target.device)[None, None, :, None]
    return (active * m_values).amax(dim=2)


def bradpit_loss(output: torch.Tensor, target: torch.Tensor, pair: PairLoss) -> torch.Tensor:
    """Branch on M: the scopes of each M ≥ 1 are scored on their own K(N, M) sequences (one for
    M = 1), from the N × M table of their tracks against their group's dummy tracks, less the loss
    against no event (``pair.table``); scopes without events add only that (``pair.silent_weight``).
    Only the dummy tracks a scope's M uses are read. M = 1, most scopes, is taken over all scopes
    with events and masked (no gather); the others gather their few scopes."""
    n = _n_tracks(output, target)
    scopes = event_scopes(target)
    total, scoped_output = scopes.split(output, pair)  # (), (S, N, A)
    m_scope = scopes.event_counts()
    one = pair.table(scoped_output, scope_vectors(scopes.target[:, :1])).sum(dim=(1, 2))  # M = 1's one sequence: every track on A0
    total = total + torch.where(m_scope == 1, one, 0.0).sum()
    for m in range(2, n + 1):
        rows = (m_scope == m).nonzero()[:, 0]
        group = scopes.target[rows, dummy_index(m, 0) : dummy_index(m, 0) + m]  # (S_M, M, 1+A)
        gain = pair.table(scoped_output[rows], scope_vectors(group))  # (S_M, N, M)
        total = total + (gain.flatten(1) @ sequence_selection(n, m, gain.dtype, gain.device).T).min(dim=1).values.sum()
    return total / (n * scope_count(output))


@cache
def sequence_selection(n_tracks: int, n_events: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """0/1 (K, N·M): row k picks entry (n, event of track n in sequence k) of an N × M table, so that
    a product sums each of the K(N, M) sequences' pair values."""
    seqs = torch.tensor(group_sequences(n_tracks, n_events))  # (K, N)
    sel = torch.zeros(len(seqs), n_tracks, n_events, dtype=dtype)
    sel[torch.arange(len(seqs))[:, None], torch.arange(n_tracks), seqs] = 1
    return sel.flatten(1).to(device)


def scope_count(output: torch.Tensor) -> int:
    """Scopes (item, frame, class) of an output (B, T, N, A, C)."""
    return output.shape[0] * output.shape[1] * output.shape[4]


def naive_sequences(n_tracks: int, n_events: int) -> list[tuple[int, ...]]:
    """All K̂(N, M) sequences, aliases included: the M events placed on M tracks without
    repetition, the remaining tracks filled with any event."""
    out = []
    for placed in itertools.permutations(range(n_tracks), n_events):
        rest = [t for t in range(n_tracks) if t not in placed]
        for fill in itertools.product(range(n_events), repeat=len(rest)):
            seq = [0] * n_tracks
            for event, t in enumerate(placed):
                seq[t] = event
            for t, event in zip(rest, fill):
                seq[t] = event
            out.append(tuple(seq))
    return out


def brute_force_loss(output: torch.Tensor, target: torch.Tensor, pair: Callable) -> torch.Tensor:
    """Scope-by-scope enumeration of all K̂(N, M) sequences: slow, obvious, the test reference."""
    n = _n_tracks(output, target)
    vectors = target_vectors(target)
    m_scope = scope_event_counts(target)
    b_size, t_size, _, _, c_size = output.shape
    total = output.new_zeros(())
    for b, t, c in itertools.product(range(b_size), range(t_size), range(c_size)):
        m = int(m_scope[b, t, c])
        o = output[b, t, :, :, c]  # (N, A)
        if m == 0:
            candidates = [torch.zeros_like(o)]
        else:
            events = vectors[b, t, dummy_index(m, 0) : dummy_index(m, 0) + m, :, c]  # (M, A)
            candidates = [events[list(seq)] for seq in naive_sequences(n, m)]
        losses = [pair(o[..., None], cand[..., None]).mean() for cand in candidates]
        total = total + torch.stack(losses).min()
    return total / m_scope.numel()


VARIANTS: dict[str, Callable[[torch.Tensor, torch.Tensor, Callable], torch.Tensor]] = {
    "baseline": baseline_loss,
    "overlay": overlay_loss,
    "distance-first": distance_first_loss,
    "bradpit": bradpit_loss,
    "brute-force": brute_force_loss,
}
"""ADPIT implementations by name (the ``--loss`` choices of train-seld, minus brute-force)."""


def adpit_loss(output: torch.Tensor, target: torch.Tensor, variant: str = "baseline", pair_loss: str = "mse") -> torch.Tensor:
    """ADPIT loss of ``output`` (B, T, N, A, C) against dummy-track ``target`` (B, T, N(N+1)/2, 1+A, C).

    For each batch item, frame and class the best sequence's loss (mean over tracks of the pair
    loss) is kept; the result is the mean over batch, frames and classes. ``pair_loss="ce"``
    treats the A axes as class logits and the target axes as class distributions.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown ADPIT variant {variant!r}; choose from {', '.join(VARIANTS)}")
    return VARIANTS[variant](output, target, _pair_fn(pair_loss))


class ADPITLoss(torch.nn.Module):
    """Drop-in for the DCASE baseline's loss class: ``forward(output, target)``.

    Accepts the baseline's flat output (B, T, N·A·C) as well as (B, T, N, A, C).
    """

    def __init__(self, variant: str = "baseline", pair_loss: str = "mse", n_tracks: int = 3, n_axes: int = 4):
        super().__init__()
        _pair_fn(pair_loss)
        if variant not in VARIANTS:
            raise ValueError(f"unknown ADPIT variant {variant!r}; choose from {', '.join(VARIANTS)}")
        self.variant, self.pair_loss, self.n_tracks, self.n_axes = variant, pair_loss, n_tracks, n_axes

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if output.dim() == 3:
            output = flat_to_tracks(output, self.n_tracks, self.n_axes, target.shape[-1])
        return adpit_loss(output, target, self.variant, self.pair_loss)


def flat_to_tracks(output: torch.Tensor, n_tracks: int, n_axes: int, n_classes: int) -> torch.Tensor:
    """The baseline's flat Multi-ACCDOA output (B, T, N·A·C) → (B, T, N, A, C)."""
    b, t, f = output.shape
    if f != n_tracks * n_axes * n_classes:
        raise ValueError(f"flat output has {f} features, expected {n_tracks}·{n_axes}·{n_classes}")
    return output.reshape(b, t, n_tracks, n_axes, n_classes)


def events_to_target(
    events: Sequence[Sequence[tuple[int, Sequence[float]]]], n_classes: int, n_tracks: int = 3, n_axes: int = 3
) -> np.ndarray:
    """Build the dummy-track target of one clip from its events per frame.

    Args:
        events: for each frame, a list of (class index, axes vector) — one entry per active event.
            More than ``n_tracks`` events of one class in a frame is an error.
        n_axes: A, the length of every axes vector (3 for a DOA, 4 with the distance).
    Returns:
        (T, N(N+1)/2, 1+A, C) float32 array: activity 1 and the axes on the tracks of group M.
    """
    out = np.zeros((len(events), n_dummy_tracks(n_tracks), 1 + n_axes, n_classes), dtype=np.float32)
    for t, frame in enumerate(events):
        by_class: dict[int, list] = {}
        for cls, vec in frame:
            by_class.setdefault(int(cls), []).append(vec)
        for cls, vecs in by_class.items():
            m = len(vecs)
            if m > n_tracks:
                raise ValueError(f"frame {t}: {m} events of class {cls} exceed {n_tracks} tracks")
            for e, vec in enumerate(vecs):
                out[t, dummy_index(m, e), 0, cls] = 1.0
                out[t, dummy_index(m, e), 1:, cls] = vec
    return out
