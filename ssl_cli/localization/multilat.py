"""Robust TDOA multilateration: RANSAC over several TDOA peaks per pair, then robust least squares.

Measurements of one frame are range differences δ = c·τᵢⱼ ≈ ‖s − rᵢ‖ − ‖s − rⱼ‖ for every pair
and each of its K peaks. A hypothesis comes from a minimal set: a reference mic r₀ and D other mics
(D = 3 in 3D, 2 in 2D), one peak each. With ρ₀ = ‖s − r₀‖ unknown, each range difference gives an
equation linear in s and ρ₀ (−2(rᵢ − r₀)·s = δᵢ₀² + 2ρ₀δᵢ₀ − ‖rᵢ‖² + ‖r₀‖²), so s = a + bρ₀, and
‖s − r₀‖² = ρ₀² leaves a quadratic with up to two solutions. Hypotheses are scored by the number
of pairs with a peak within ``threshold`` metres of the predicted range difference (each pair
counts once), the best is refined by iteratively reweighted Gauss–Newton with a Huber loss on
its inliers. Everything is batched over frames × hypotheses × pairs × peaks.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from sslkit.errors import UserError
from sslkit.geometry import SPEED_OF_SOUND, array_span, check_array_geometry, mirror_normal, range_differences
from sslkit.localization.region import plane_height, range_warning, search_bounds
from sslkit.localization.track import PositionTrack
from sslkit.options import MULTILAT_TDOA_OPTIONS, MultilatOptions, options_set
from sslkit.recording import Recording
from sslkit.resources import check_memory

MISSING_PEAK = 1e6
"""Stand-in range difference (m) for a missing peak: never within any threshold."""
PRESCREEN_PAIRS = 12
PRESCREEN_KEEP = 40
"""Hypotheses are first scored on PRESCREEN_PAIRS pairs; the best PRESCREEN_KEEP get full scoring."""
RANSAC_CHUNK_FRAMES = 256
RANSAC_CHUNK_BYTES = 256 * 2**20
"""At most this many frames, and this much memory, have their hypotheses drawn and scored at once:
RANSAC's memory does not grow with the recording."""


def hypothesis_bytes(n_hyp: int, n_mics: int, n_pairs: int, n_peaks: int) -> int:
    """Memory ``best_hypotheses`` takes per frame (bytes): the draws that pick each hypothesis's mics,
    its two candidate positions scored on up to ``PRESCREEN_PAIRS`` pairs of ``n_peaks`` peaks, and
    the ``PRESCREEN_KEEP`` best scored on every pair."""
    candidates = 2 * n_hyp
    fully_scored = min(candidates, PRESCREEN_KEEP) if n_pairs > PRESCREEN_PAIRS else 0
    return n_hyp * 16 * n_mics + candidates * (48 + 4 * n_mics + 12 * min(n_pairs, PRESCREEN_PAIRS) * n_peaks) + fully_scored * 8 * n_pairs * n_peaks


def ransac_chunk_frames(opts: RansacOptions, n_mics: int, n_pairs: int, n_peaks: int) -> int:
    """Frames per chunk of ``best_hypotheses`` (``RANSAC_CHUNK_FRAMES`` or fewer); ResourceError when
    one frame's hypotheses alone would not fit in memory."""
    per_frame = hypothesis_bytes(opts.hypotheses, n_mics, n_pairs, n_peaks)
    check_memory(per_frame, f"{opts.hypotheses} RANSAC hypotheses per frame", "lower --hypotheses")
    return int(max(1, min(RANSAC_CHUNK_FRAMES, RANSAC_CHUNK_BYTES // per_frame)))


@dataclass
class RansacOptions:
    """RANSAC and refinement settings."""

    hypotheses: int = 400
    threshold: float = 0.1
    min_inliers: int | None = None
    refine_iterations: int = 10
    neighbours: int = 4
    """Each frame also tries the best hypotheses of this many frames on either side (a source
    moves little between frames, so a neighbour's good solution rescues an unlucky draw)."""
    dims: int = 3
    height: float | None = None
    bounds: np.ndarray | None = None
    c: float = SPEED_OF_SOUND
    seed: int = 0


def default_min_inliers(n_pairs: int, dims: int) -> int:
    """At least the minimal set plus two, and a fifth of the pairs (11 of the 55 pairs of 11 mics)."""
    return max(dims + 2, int(round(0.2 * n_pairs)))


def star_solutions(ref: np.ndarray, others: np.ndarray, deltas: np.ndarray, free: np.ndarray, fixed: np.ndarray) -> np.ndarray:
    """Minimal-case positions from one reference mic and D others.

    Args:
        ref: (H, 3) reference mic positions.
        others: (H, D, 3) the other mics.
        deltas: (H, D) range differences ‖s − rᵢ‖ − ‖s − r₀‖ in metres.
        free: (3,) bool, the coordinates solved for (D of them); the rest take ``fixed`` values.
        fixed: (3,) values of the fixed coordinates.
    Returns:
        (H, 2, 3) the two roots (NaN where complex, degenerate, or ρ₀ < 0 / ρᵢ < 0).
    """
    rel = others - ref[:, None]  # (H, D, 3)
    # 2 rel·s = ‖rᵢ‖² − ‖r₀‖² − δ² − 2ρ₀δ, written for the free coordinates with fixed ones moved right
    fixed_part = (rel[..., ~free] * fixed[~free]).sum(-1)
    rhs0 = (np.sum(others**2, -1) - np.sum(ref**2, -1)[:, None] - deltas**2) / 2 - fixed_part
    rhs1 = -deltas
    a_mat = rel[..., free]  # (H, D, D)
    det = np.linalg.det(a_mat)
    ok = np.abs(det) > 1e-9
    a_safe = np.where(ok[:, None, None], a_mat, np.eye(a_mat.shape[-1]))
    sol = np.linalg.solve(a_safe, np.stack([rhs0, rhs1], -1))  # (H, D, 2): s_free = u + v ρ₀
    u, v = sol[..., 0], sol[..., 1]
    base = np.broadcast_to(fixed, ref.shape).copy()
    # ‖s − r₀‖² = ρ₀²  →  (v·v − 1) ρ₀² + 2 v·(u − r₀f) ρ₀ + ‖u − r₀f‖² + ‖fixed − r₀‖²_fixed = 0
    w = u - ref[:, free]
    fixed_dist2 = ((base - ref)[:, ~free] ** 2).sum(-1)
    qa, qb, qc = (v * v).sum(-1) - 1, 2 * (v * w).sum(-1), (w * w).sum(-1) + fixed_dist2
    disc = qb**2 - 4 * qa * qc
    sqrt_disc = np.sqrt(np.where(disc >= 0, disc, np.nan))
    rho = np.stack([(-qb + sqrt_disc) / (2 * qa), (-qb - sqrt_disc) / (2 * qa)], axis=1)  # (H, 2)
    valid = ok[:, None] & (rho >= 0) & np.all(rho[..., None] + deltas[:, None] >= 0, axis=-1)
    out = np.repeat(base[:, None], 2, axis=1)
    out[..., free] = u[:, None] + v[:, None] * rho[..., None]
    return np.where(valid[..., None], out, np.nan)


def mirror_star_solutions(ref: np.ndarray, others: np.ndarray, deltas: np.ndarray, span: np.ndarray, across: np.ndarray,
                          height: float | None = None) -> np.ndarray:
    """Minimal-case positions where the mics lie on a line or in a plane whose mirror the array does
    not hear (:func:`~sslkit.geometry.mirror_normal`, ``across``), which makes :func:`star_solutions`'
    system singular: coplanar mics in 3D, and in the horizontal plane at ``height`` collinear mics
    or mics in a vertical plane. The two roots are mirror images.

    With dᵢ = rᵢ − r₀ in the mics' span (orthonormal rows ``span`` (k, 3)), tᵢ = span·dᵢ and
    s = r₀ + spanᵀw + (a part across the span), ‖s − rᵢ‖² = ρ₀² − 2tᵢ·w + ‖dᵢ‖², so ρᵢ = ρ₀ + δᵢ gives
    2δᵢρ₀ + 2tᵢ·w = ‖dᵢ‖² − δᵢ², linear in (ρ₀, w); with a plane's k = 2 in 2D the height adds
    (spanᵀw)_z = height − r₀_z. Across the span: β·up (a line in 2D: its height) ± α·across, with
    α² = ρ₀² − ‖w‖² − β².

    Shapes: ref (H, 3), others (H, D, 3), deltas (H, D) m → (H, 2, 3) (NaN where complex,
    degenerate, or a range < 0).
    """
    d = others - ref[:, None]
    rows = np.concatenate([2 * deltas[..., None], 2 * d @ span.T], axis=-1)  # (H, D, 1 + k)
    rhs = (d**2).sum(-1) - deltas**2
    if height is not None and len(span) == 2:  # a vertical plane: the height fixes w's vertical part
        rows = np.concatenate([rows, np.broadcast_to(np.r_[0.0, span[:, 2]], (len(ref), 1, 3))], axis=1)
        rhs = np.concatenate([rhs, height - ref[:, 2:]], axis=1)
    ok = np.abs(np.linalg.det(rows)) > 1e-9
    sol = np.linalg.solve(np.where(ok[:, None, None], rows, np.eye(rows.shape[-1])), rhs[..., None])[..., 0]
    rho, w = sol[:, 0], sol[:, 1:]
    centre = ref + w @ span
    up, beta = np.zeros(3), np.zeros(len(ref))
    if height is not None and len(span) == 1:  # a line in 2D: the height fixes the part across it that is not `across`
        up = np.cross(span[0], across)
        beta = (height - centre[:, 2]) / up[2]
    alpha2 = rho**2 - (w**2).sum(-1) - beta**2
    alpha = np.sqrt(np.where(alpha2 >= 0, alpha2, np.nan))
    base = centre + beta[:, None] * up
    roots = np.stack([base + alpha[:, None] * across, base - alpha[:, None] * across], axis=1)
    valid = ok & (rho >= 0) & np.all(rho[:, None] + deltas >= 0, axis=-1) & np.isfinite(alpha)
    return np.where(valid[:, None, None], roots, np.nan)


def inlier_residuals(points: np.ndarray, mics: np.ndarray, pairs: np.ndarray, measured: np.ndarray) -> np.ndarray:
    """Distance (m) from each pair's predicted range difference to its nearest peak, float32.

    points (F, H, 3), measured (F, P, K) range differences (NaN = no peak) → (F, H, P).
    """
    import torch

    pts = torch.as_tensor(points, dtype=torch.float32)
    dist = torch.cdist(pts, torch.as_tensor(mics, dtype=torch.float32)[None].expand(len(pts), -1, -1))  # (F, H, M)
    idx = torch.as_tensor(pairs)
    pred = dist[..., idx[:, 0]] - dist[..., idx[:, 1]]  # (F, H, P)
    filled = torch.as_tensor(np.nan_to_num(measured, nan=MISSING_PEAK), dtype=torch.float32)
    return (pred[..., None] - filled[:, None]).abs().amin(dim=-1).numpy()  # (F, H, P, K) → (F, H, P)


def draw_minimal_sets(
    rng: np.random.Generator, measured: np.ndarray, weights: np.ndarray, pairs: np.ndarray, n_mics: int, dims: int, n_hyp: int
):
    """Random reference mic, D other mics and one peak each, for every frame: returns the mic
    indices (F, H, 1+D) and range differences δᵢ₀ (F, H, D) (NaN where the peak is missing).

    Peaks are drawn with probability proportional to ``weights`` (F, P, K), e.g. their scores,
    so the strongest peak, usually the direct path, is tried most often.
    """
    f_count, _, k = measured.shape
    pair_index = -np.ones((n_mics, n_mics), dtype=int)
    pair_index[pairs[:, 0], pairs[:, 1]] = np.arange(len(pairs))
    sign = np.zeros((n_mics, n_mics))
    sign[pairs[:, 0], pairs[:, 1]] = 1.0
    sign[pairs[:, 1], pairs[:, 0]] = -1.0
    pair_index[pairs[:, 1], pairs[:, 0]] = np.arange(len(pairs))
    mics_idx = np.argsort(rng.random((f_count, n_hyp, n_mics)), axis=-1)[..., : dims + 1]  # distinct mics
    ref, oth = mics_idx[..., :1], mics_idx[..., 1:]
    p_idx = pair_index[oth, ref]  # (F, H, D); −1 when the pair was not measured
    frames = np.arange(f_count)[:, None, None]
    cdf = np.cumsum(weights, axis=-1)
    cdf = cdf / np.maximum(cdf[..., -1:], 1e-12)  # (F, P, K)
    u = rng.random(p_idx.shape)[..., None]
    peak = np.minimum((u > cdf[frames, np.maximum(p_idx, 0)]).sum(-1), k - 1)
    delta = measured[frames, np.maximum(p_idx, 0), peak] * sign[oth, ref]  # δ(other, ref) = ρ_other − ρ_ref
    return mics_idx, np.where(p_idx >= 0, delta, np.nan)


def prescreen(cand: np.ndarray, mics: np.ndarray, pairs: np.ndarray, measured: np.ndarray, threshold: float,
              rng: np.random.Generator) -> np.ndarray:
    """Keep the PRESCREEN_KEEP hypotheses per frame with most inliers among PRESCREEN_PAIRS random
    pairs (preemptive RANSAC): full scoring then costs a fraction. (F, H, 3) → (F, min(H, keep), 3)."""
    if cand.shape[1] <= PRESCREEN_KEEP or len(pairs) <= PRESCREEN_PAIRS:
        return cand
    sub = rng.choice(len(pairs), PRESCREEN_PAIRS, replace=False)
    resid = inlier_residuals(np.nan_to_num(cand, nan=1e6), mics, pairs[sub], measured[:, sub])
    score = np.where(np.isnan(cand).any(-1), -1, (resid < threshold).sum(-1))
    top = np.argpartition(-score, PRESCREEN_KEEP, axis=1)[:, :PRESCREEN_KEEP]
    return np.take_along_axis(cand, top[..., None], axis=1)


def share_neighbours(best: np.ndarray, mics: np.ndarray, pairs: np.ndarray, measured: np.ndarray, threshold: float, width: int) -> np.ndarray:
    """For each frame, the best of its own hypothesis and those of the ``width`` frames on each
    side, scored on the frame's own measurements. (F, 3) → (F, 3)."""
    if width == 0 or len(best) < 2:
        return best
    f_count = len(best)
    offsets = np.arange(-width, width + 1)
    idx = np.clip(np.arange(f_count)[:, None] + offsets, 0, f_count - 1)
    cand = best[idx]  # (F, 2w+1, 3)
    resid = inlier_residuals(np.nan_to_num(cand, nan=1e6), mics, pairs, measured)
    score = (resid < threshold).sum(-1) - np.clip(resid, 0, threshold).mean(-1) / threshold
    score[np.isnan(cand).any(-1)] = -np.inf
    return cand[np.arange(f_count), score.argmax(axis=1)]


def best_hypotheses(mics: np.ndarray, pairs: np.ndarray, measured: np.ndarray, weights: np.ndarray, opts: RansacOptions,
                    free: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each frame's hypothesis (from minimal sets of peaks) with the most inliers: measured range
    differences and peak weights (F, P, K) → positions (F, 3), NaN where none is valid; ``free``
    (3,) bool are the coordinates solved for."""
    f_count, dims = len(measured), opts.dims
    fixed = np.array([0.0, 0.0, opts.height if opts.height is not None else 0.0])
    mic_idx, delta = draw_minimal_sets(rng, measured, weights, pairs, len(mics), dims, opts.hypotheses)
    flat_ref = mics[mic_idx[..., 0]].reshape(-1, 3)
    flat_oth = mics[mic_idx[..., 1:]].reshape(-1, dims, 3)
    across = mirror_normal(mics, dims)
    if across is None:
        cand = star_solutions(flat_ref, flat_oth, np.nan_to_num(delta.reshape(-1, dims)), free, fixed)
    else:  # mics on a line or in a plane: star_solutions' system is singular
        cand = mirror_star_solutions(flat_ref, flat_oth, np.nan_to_num(delta.reshape(-1, dims)), array_span(mics), across,
                                     opts.height if dims == 2 else None)
    cand = cand.reshape(f_count, opts.hypotheses * 2, 3)
    cand[np.repeat(np.isnan(delta).any(-1), 2, axis=1)] = np.nan
    if opts.bounds is not None:
        outside = np.any((cand < opts.bounds[0]) | (cand > opts.bounds[1]), axis=-1)
        cand[outside] = np.nan
    cand = prescreen(cand, mics, pairs, measured, opts.threshold, rng)
    resid = inlier_residuals(np.nan_to_num(cand, nan=1e6), mics, pairs, measured)  # (F, T, P)
    score = (resid < opts.threshold).sum(-1) - np.clip(resid, 0, opts.threshold).mean(-1) / opts.threshold
    score[np.isnan(cand).any(-1)] = -1
    return cand[np.arange(f_count), score.argmax(axis=1)]


def ransac_multilaterate(
    mics: np.ndarray, pairs: np.ndarray, tdoa: np.ndarray, opts: RansacOptions, scores: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Robust positions for every frame.

    Args:
        mics: (M, 3) positions. pairs: (P, 2). tdoa: (F, P, K) seconds, NaN = no peak/silent.
        scores: (F, P, K) peak strengths used to draw peaks for hypotheses (default: uniform).
    Returns:
        dict with ``xyz`` (F, 3) (NaN where no consistent solution), ``n_inliers`` (F,),
        ``rms`` (F,) residual of the inliers in metres and ``confidence`` (F,) in [0, 1].
    """
    rng = np.random.default_rng(opts.seed)
    measured = tdoa * opts.c
    f_count, n_pairs, _ = measured.shape
    dims = opts.dims
    free = np.array([True, True, dims == 3])
    weights = np.where(np.isnan(measured), 0.0, 1.0 if scores is None else np.clip(np.nan_to_num(scores), 1e-6, None))
    chunk = ransac_chunk_frames(opts, len(mics), n_pairs, measured.shape[-1])
    best = np.concatenate([best_hypotheses(mics, pairs, measured[s : s + chunk], weights[s : s + chunk], opts, free, rng)
                           for s in range(0, f_count, chunk)])
    best = share_neighbours(best, mics, pairs, measured, opts.threshold, opts.neighbours)
    xyz, rms, n_in = refine(best, mics, pairs, measured, opts, free)
    min_inliers = opts.min_inliers or default_min_inliers(n_pairs, dims)
    fail = (n_in < min_inliers) | np.isnan(xyz).any(-1)
    if opts.bounds is not None:
        fail |= np.any((xyz < opts.bounds[0] - opts.threshold) | (xyz > opts.bounds[1] + opts.threshold), axis=-1)
    xyz[fail] = np.nan
    valid_pairs = np.maximum(1, (~np.isnan(measured).all(-1)).sum(-1))
    confidence = np.where(fail, 0.0, (n_in / valid_pairs) * np.clip(1 - rms / opts.threshold, 0, 1))
    return {"xyz": xyz, "n_inliers": np.where(np.isnan(n_in), 0, n_in).astype(int), "rms": rms, "confidence": confidence}


def refine(start: np.ndarray, mics: np.ndarray, pairs: np.ndarray, measured: np.ndarray, opts: RansacOptions, free: np.ndarray):
    """Batched IRLS Gauss–Newton with a Huber loss on each frame's inliers.

    The inlier set (each pair's nearest peak within a gate) is re-selected every iteration. The
    gate starts at 2·threshold and then shrinks to 3 robust standard deviations of the inlier
    residuals (never below threshold/20), so that stray peaks that happen to lie near the
    solution stop pulling it once the true inliers agree closely. Returns positions (F, 3),
    inlier RMS residual (F,) and inlier counts (F,) at ``threshold``.
    """
    x = start.copy()
    ok = ~np.isnan(x).any(-1)
    x[~ok] = mics.mean(axis=0)
    gate = np.full(len(x), 2 * opts.threshold)
    for it in range(opts.refine_iterations):
        resid, jac, inlier = _residuals_and_jacobian(x, mics, pairs, measured, gate)
        if it >= opts.refine_iterations // 2:
            abs_in = np.where(inlier > 0, np.abs(resid), np.nan)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # frames without inliers: NaN, handled below
                sigma = 1.4826 * np.nanmedian(abs_in, axis=1)
            gate = np.clip(np.nan_to_num(3 * sigma, nan=2 * opts.threshold), opts.threshold / 20, 2 * opts.threshold)
            resid, jac, inlier = _residuals_and_jacobian(x, mics, pairs, measured, gate)
        scale = gate[:, None] / 2
        weight = inlier * np.minimum(1.0, scale / np.maximum(np.abs(resid), 1e-12))  # Huber IRLS weights
        j = jac[..., free]
        jtj = np.einsum("fpi,fp,fpj->fij", j, weight, j) + 1e-9 * np.eye(free.sum())
        jtr = np.einsum("fpi,fp,fp->fi", j, weight, resid)
        step = np.linalg.solve(jtj, -jtr[..., None])[..., 0]
        x[:, free] += np.where(ok[:, None], step, 0)
    resid, _, inlier = _residuals_and_jacobian(x, mics, pairs, measured, np.full(len(x), opts.threshold))
    n_in = inlier.sum(-1).astype(float)
    rms = np.sqrt((inlier * resid**2).sum(-1) / np.maximum(n_in, 1))
    x[~ok] = np.nan
    return x, np.where(ok, rms, np.nan), np.where(ok, n_in, 0)


def _residuals_and_jacobian(x: np.ndarray, mics: np.ndarray, pairs: np.ndarray, measured: np.ndarray, gate: np.ndarray):
    """Residual of each pair's nearest peak (F, P), its Jacobian w.r.t. x (F, P, 3), and the
    0/1 inlier mask (|residual| < gate, one gate per frame)."""
    diff = x[:, None] - mics[None]  # (F, M, 3)
    dist = np.linalg.norm(diff, axis=-1)
    unit = diff / np.maximum(dist[..., None], 1e-9)
    pred = dist[:, pairs[:, 0]] - dist[:, pairs[:, 1]]  # (F, P)
    gap = np.abs(pred[..., None] - measured)
    nearest = np.nanargmin(np.where(np.isnan(gap), np.inf, gap), axis=-1)
    chosen = np.take_along_axis(measured, nearest[..., None], axis=-1)[..., 0]
    resid = pred - chosen
    inlier = (np.abs(resid) < gate[:, None]) & ~np.isnan(resid)
    jac = unit[:, pairs[:, 0]] - unit[:, pairs[:, 1]]
    return np.nan_to_num(resid), jac, inlier.astype(float)


def pool_frames(times: np.ndarray, tdoa: np.ndarray, score: np.ndarray, pool: int):
    """Merge each ``pool`` consecutive frames into one measurement set (peaks stacked), for a
    quasi-static source. (F, P, K) → (F // pool, P, K·pool); times are averaged."""
    if pool <= 1:
        return times, tdoa, score
    n = len(times) // pool
    if n == 0:
        raise UserError(f"pool = {pool} is longer than the recording's {len(times)} frames")

    def merge(a: np.ndarray) -> np.ndarray:
        f, p, k = a[: n * pool].shape
        return a[: n * pool].reshape(n, pool, p, k).transpose(0, 2, 1, 3).reshape(n, p, pool * k)
    return times[: n * pool].reshape(n, pool).mean(1), merge(tdoa), merge(score)


def multilat_tdoas(rec: Recording, opts: MultilatOptions, on_progress=None):
    """The TDOAs multilateration works on: read from ``opts.tdoa`` when it names a tdoa.csv, else estimated."""
    from sslkit.tdoa import TDOA_METHODS, TdoaOptions, read_tdoa_csv, run_tdoa

    if opts.tdoa not in TDOA_METHODS:
        if not str(opts.tdoa).endswith(".csv"):
            raise UserError(f"tdoa = '{opts.tdoa}': give a TDOA method ({', '.join(TDOA_METHODS)}) or a tdoa.csv file")
        given = options_set(opts, MULTILAT_TDOA_OPTIONS)
        if given:
            raise UserError(f"{', '.join(given)}: {'it shapes' if len(given) == 1 else 'they shape'} how TDOAs are estimated, "
                            f"and {opts.tdoa} holds them already")
        return read_tdoa_csv(opts.tdoa, rec.mic_ids)
    tdoa_opts = TdoaOptions(frame=opts.frame, hop=opts.hop, peaks=opts.peaks, weighting=opts.weighting, beta=opts.beta, max_tau=opts.max_tau,
                            c=opts.c, device=opts.device, checkpoint=opts.checkpoint,
                            window=0.0 if opts.static else opts.window, static=opts.static,  # a static run has no window (check_static)
                            precision=opts.precision, max_freq=opts.max_freq, taper=opts.taper)
    return run_tdoa(rec, opts.tdoa, tdoa_opts, on_progress)


def locate_multilat(rec: Recording, opts: MultilatOptions, on_progress=None) -> PositionTrack:
    """Positions per hop by RANSAC multilateration; several sources by sequential RANSAC (each
    source's consistent peaks are removed before the next is searched)."""
    bounds = search_bounds(rec, opts.bounds)
    notes = [n for n in (check_array_geometry(rec.mics, opts.dims, bounds if opts.bounds is not None else None, rec.path), range_warning(rec.mics, bounds)) if n]
    result = multilat_tdoas(rec, opts, on_progress)
    times, tdoa, score = pool_frames(result.times, result.tdoa, result.score, opts.pool)
    height = plane_height(rec.mics, bounds, opts.height) if opts.dims == 2 else None
    ransac = RansacOptions(opts.hypotheses, opts.threshold, opts.min_inliers, dims=opts.dims, height=height,
                           bounds=bounds, c=opts.c, seed=opts.seed)
    heard = ~np.isnan(tdoa).all(axis=(1, 2))  # hops with a TDOA peak in some pair
    found = []
    for _ in range(opts.sources):
        out = ransac_multilaterate(rec.mics, result.pairs, tdoa, ransac, score)
        found.append(out)
        explained = np.abs(tdoa * opts.c - range_differences(out["xyz"], rec.mics, result.pairs)[..., None]) < opts.threshold
        tdoa, score = np.where(explained, np.nan, tdoa), np.where(explained, 0.0, score)
    if heard.any() and np.isnan(found[0]["xyz"][heard]).any(axis=-1).all():
        low, high = (", ".join(f"{v:.2f}" for v in corner) for corner in bounds)
        notes.append(f"no hop was located: no position in the search region (from ({low}) to ({high}) m) is consistent with enough pairs' "
                     "TDOAs; the source may lie outside it (--bounds), or the array see it only as a direction (--far-field)")
    return PositionTrack.from_hops(times, np.stack([o["xyz"] for o in found], 1), np.stack([o["confidence"] for o in found], 1),
                                   np.stack([o["n_inliers"] for o in found], 1), "; ".join(notes) or None)
