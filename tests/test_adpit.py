"""Every ADPIT variant gives the baseline's loss and gradient; counts match the paper's tables."""

from __future__ import annotations

import functools

import pytest
import torch

from sslkit.models.adpit import (
    VARIANTS,
    ADPITLoss,
    adpit_loss,
    baseline_rows,
    distinct_pairs,
    dummy_index,
    events_to_target,
    group_sequences,
    n_dummy_tracks,
    naive_sequences,
    overlay_rows,
    sequence_count,
    sequence_upper_bound,
)

REL_TOL = 1e-12
FAST_VARIANTS = ["overlay", "distance-first", "bradpit"]


def random_problem(n_tracks: int, n_axes: int, seed: int, shape=(2, 3, 4), p_empty: float = 0.2, pair_loss: str = "mse"):
    """Random output and a valid dummy-track target with every M from 0 to N present."""
    g = torch.Generator().manual_seed(seed)
    b, t, c = shape
    output = torch.randn(b, t, n_tracks, n_axes, c, generator=g, dtype=torch.float64, requires_grad=True)
    target = torch.zeros(b, t, n_dummy_tracks(n_tracks), 1 + n_axes, c, dtype=torch.float64)
    m_all = torch.randint(1, n_tracks + 1, (b, t, c), generator=g)
    m_all[torch.rand(b, t, c, generator=g) < p_empty] = 0
    m_all.view(-1)[: n_tracks + 1] = torch.arange(n_tracks + 1)  # make sure every M occurs
    for (bi, ti, ci), m in zip(torch.cartesian_prod(*(torch.arange(s) for s in (b, t, c))).tolist(), m_all.view(-1).tolist()):
        for e in range(m):
            vec = torch.softmax(torch.randn(n_axes, generator=g, dtype=torch.float64), 0) if pair_loss == "ce" else torch.randn(n_axes, generator=g, dtype=torch.float64)
            target[bi, ti, dummy_index(m, e), 0, ci] = 1
            target[bi, ti, dummy_index(m, e), 1:, ci] = vec
    return output, target


def loss_and_grad(variant: str, output: torch.Tensor, target: torch.Tensor, pair_loss: str = "mse"):
    out = output.detach().clone().requires_grad_(True)
    loss = adpit_loss(out, target, variant, pair_loss)
    (grad,) = torch.autograd.grad(loss, out)
    return loss.detach(), grad


def test_sequence_counts_match_paper_tables():
    assert [sequence_count(3, m) for m in range(4)] == [1, 1, 6, 6]
    assert sequence_upper_bound(3, 2) == 12  # Table 1: twelve variants, six distinct
    assert len(naive_sequences(3, 2)) == 12 and len(set(naive_sequences(3, 2))) == 6
    assert len(baseline_rows(3)) == 13  # Table 2
    assert len(overlay_rows(3)) == 6  # Table 3
    assert len(distinct_pairs(overlay_rows(3), 6)[0]) == 12  # Table 4: twelve distinct pairs
    for n in range(2, 7):  # the overlay rows cover every sequence of every group
        rows = overlay_rows(n)
        for m in range(1, n + 1):
            first = dummy_index(m, 0)
            covered = {tuple(next(d for d in track if first <= d < first + m) - first for track in row) for row in rows}
            assert covered == set(group_sequences(n, m))
    assert [sequence_count(5, m) for m in range(1, 6)] == [1, 30, 150, 240, 120]  # M! S(5, M)
    assert sequence_count(2, 4) == 12  # M > N: 4P2
    for n in range(1, 7):
        for m in range(1, n + 1):
            assert sequence_count(n, m) == len(set(naive_sequences(n, m)))
            assert sequence_upper_bound(n, m) == len(naive_sequences(n, m))


@pytest.mark.parametrize("n_axes", [3, 4])
@pytest.mark.parametrize("variant", FAST_VARIANTS)
@pytest.mark.parametrize("pair_loss", ["mse", "ce", "mse-reciprocal-distance"])
def test_variants_match_baseline_for_three_tracks(variant, n_axes, pair_loss):
    if pair_loss == "mse-reciprocal-distance" and n_axes == 3:
        pytest.skip("the reciprocal distance weighting needs the distance axis")
    output, target = random_problem(3, n_axes, seed=n_axes, shape=(3, 5, 13), pair_loss=pair_loss)
    ref_loss, ref_grad = loss_and_grad("baseline", output, target, pair_loss)
    loss, grad = loss_and_grad(variant, output, target, pair_loss)
    torch.testing.assert_close(loss, ref_loss, rtol=REL_TOL, atol=0)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-10, atol=1e-15)


@functools.cache
def brute_force_reference(n_tracks: int):
    """A random problem and its brute-force loss and gradient (slow for N = 6: computed once)."""
    output, target = random_problem(n_tracks, 3, seed=10 + n_tracks, shape=(2, 2, 3))
    return output, target, *loss_and_grad("brute-force", output, target)


@pytest.mark.parametrize("n_tracks", [2, 3, 4, 5, 6])
@pytest.mark.parametrize("variant", ["baseline", *FAST_VARIANTS])
def test_variants_match_brute_force(variant, n_tracks):
    if variant == "baseline" and n_tracks == 6:
        pytest.skip("the baseline's 4683 candidate rows are the point of the faster variants")
    output, target, ref_loss, ref_grad = brute_force_reference(n_tracks)
    loss, grad = loss_and_grad(variant, output, target)
    torch.testing.assert_close(loss, ref_loss, rtol=REL_TOL, atol=0)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-10, atol=1e-15)


@pytest.mark.parametrize("pair_loss", ["mse", "ce"])
def test_strided_outputs_give_the_baseline_gradient(pair_loss):
    """A network's output is often a permuted view; the scope gather and its hand-written backward
    must read and write it by its strides."""
    output, target = random_problem(3, 4, seed=11, shape=(3, 4, 5), pair_loss=pair_loss)
    strided = output.detach().permute(0, 1, 4, 2, 3).contiguous().permute(0, 1, 3, 4, 2)  # same values, C not last in memory
    assert not strided.is_contiguous()
    ref_loss, ref_grad = loss_and_grad("baseline", output, target, pair_loss)
    for variant in FAST_VARIANTS:
        out = strided.clone().requires_grad_(True)
        loss = adpit_loss(out, target, variant, pair_loss)
        (grad,) = torch.autograd.grad(loss, out)
        torch.testing.assert_close(loss, ref_loss, rtol=REL_TOL, atol=0)
        torch.testing.assert_close(grad, ref_grad, rtol=1e-10, atol=1e-15)


def test_half_precision_outputs_give_a_finite_loss():
    """The sum of every track's squares over a batch exceeds float16's range; it is accumulated in float32."""
    output, target = random_problem(3, 4, seed=5, shape=(64, 20, 13))
    output = 4 * output.detach()
    for variant in FAST_VARIANTS:
        half = output.half().requires_grad_(True)
        loss = adpit_loss(half, target.half(), variant)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(half.grad).all()
        assert loss.item() == pytest.approx(adpit_loss(output, target, "baseline").item(), rel=1e-3)


def test_aliased_ties_do_not_change_the_gradient():
    """Scopes with M ≤ 1 tie all rows (13 aliases of A0A0A0 in the baseline, 6 in the overlay):
    whichever alias wins, the gradient is the analytic one of the single true sequence."""
    output, target = random_problem(3, 4, seed=7, shape=(2, 4, 5), p_empty=0.0)
    target[:, :, 1:] = 0  # only group A: every scope has M = 1 (or 0 where A0 is inactive)
    target[0, 0, 0, 0] = 0
    a0 = target[:, :, :1, :1] * target[:, :, :1, 1:]  # (B, T, 1, A, C)
    expected = 2 * (output.detach() - a0) / output.numel()
    for variant in ["baseline", *FAST_VARIANTS, "brute-force"]:
        _, grad = loss_and_grad(variant, output, target)
        torch.testing.assert_close(grad, expected, rtol=1e-12, atol=1e-15)


def test_perfect_prediction_has_zero_loss_and_wrong_one_does_not():
    events = [[(0, [1.0, 0.0, 0.0]), (0, [0.0, 1.0, 0.0])], [(2, [0.0, 0.0, 1.0])]]
    target = torch.from_numpy(events_to_target(events, n_classes=3))[None].double()
    output = torch.zeros(1, 2, 3, 3, 3, dtype=torch.float64)
    output[0, 0, :, :, 0] = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])  # B1 B0 B0
    output[0, 1, :, 2, 2] = 1.0  # A0 A0 A0
    for variant in VARIANTS:
        assert adpit_loss(output, target, variant).item() == pytest.approx(0.0, abs=1e-15)
    output[0, 0, 2, :, 0] = torch.tensor([0.0, 0.0, 1.0])
    assert adpit_loss(output, target, "bradpit").item() > 0.01


def test_module_accepts_the_baseline_flat_layout():
    output, target = random_problem(3, 4, seed=1, shape=(2, 5, 13))
    flat = output.detach().reshape(2, 5, -1)
    for variant in FAST_VARIANTS:
        torch.testing.assert_close(ADPITLoss(variant)(flat, target), adpit_loss(output.detach(), target, "baseline"))
    with pytest.raises(ValueError, match="unknown ADPIT variant"):
        ADPITLoss("nope")


def test_bench_adpit_cli_writes_json(cli, tmp_path):
    import json

    from conftest import assert_one_line_error

    out = tmp_path / "bench.json"
    result = cli("bench-adpit", "--tracks", "2,3", "--batch-size", 2, "--frames", 3, "--classes", 4,
                 "--repeats", 3, "--warmup", 0, "--device", "cpu", "--out", out)
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    rows = report["results"]
    assert report["load_average_at_start"] >= 0 and "cores" in report["machine"] and "load average" in result.output
    assert "│ 3 │ bradpit" in result.output  # every column, N too, fits the console
    assert [(r["tracks"], r["variant"]) for r in rows][:4] == [(2, "baseline"), (2, "overlay"), (2, "distance-first"), (2, "bradpit")]
    assert all(r["seconds"] > 0 and r["seconds_spread"][0] <= r["seconds"] <= r["seconds_spread"][1] for r in rows)
    assert rows[0]["speedup"] == 1.0 and rows[0]["speedup_spread"] == [1.0, 1.0]
    assert_one_line_error(cli("bench-adpit", "--tracks", "three", "--out", tmp_path / "x.json"), "--tracks")
    assert_one_line_error(cli("bench-adpit", "--tracks", "3,3", "--out", tmp_path / "x.json"), "--tracks names a number of tracks twice")
    assert not (tmp_path / "x.json").exists()
    huge = cli("bench-adpit", "--tracks", "3", "--batch-size", 100000, "--frames", 100000, "--device", "cpu", "--out", tmp_path / "y.json")
    assert_one_line_error(huge, "ADPIT inputs", "--batch-size")
    assert "sslkit bench-adpit --tracks" in cli("bench-adpit", "--help").output


@pytest.mark.parametrize("variant", ["overlay", "distance-first", "bradpit"])
def test_faster_variants_refuse_targets_with_several_active_groups_per_scope(variant):
    from sslkit.models.adpit import adpit_loss, dummy_index, n_dummy_tracks

    torch.manual_seed(0)
    output = torch.randn(2, 3, 3, 4, 2)
    target = torch.zeros(2, 3, n_dummy_tracks(3), 5, 2)
    target[0, 1, dummy_index(1, 0), :, 1] = torch.tensor([1.0, 1.0, 0.0, 0.0, 2.0])  # group A active …
    adpit_loss(output, target, variant)  # one group per scope: fine
    target[0, 1, dummy_index(2, 1), :, 1] = torch.tensor([1.0, 0.0, 1.0, 0.0, 3.0])  # … and group B in the same scope
    with pytest.raises(ValueError, match="item 0, frame 1, class 1 has events in 2 dummy-track groups"):
        adpit_loss(output, target, variant)
    adpit_loss(output, target, "baseline")  # the baseline's definition takes any target


@pytest.mark.parametrize("variant", FAST_VARIANTS)
def test_reciprocal_distance_weighting_is_the_same_loss_in_every_variant(variant):
    output, target = random_problem(3, 4, seed=7, shape=(2, 4, 5))
    target[:, :, :, 4] = target[:, :, :, 4].abs() + 0.5  # distances of 0.5 m and more
    ref_loss, ref_grad = loss_and_grad("baseline", output, target, "mse-reciprocal-distance")
    loss, grad = loss_and_grad(variant, output, target, "mse-reciprocal-distance")
    torch.testing.assert_close(loss, ref_loss, rtol=REL_TOL, atol=0)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-10, atol=1e-15)


def test_reciprocal_distance_weighting_by_hand():
    from sslkit.models.adpit import reciprocal_distance_mse_pair

    output = torch.tensor([[0.0, 0.0, 0.0, 1.0]]).T[None]  # (1, 4, 1): distance 1 m predicted
    event = torch.tensor([[1.0, 0.0, 0.0, 4.0]]).T[None]  # at 4 m
    silent = torch.zeros(1, 4, 1)
    assert reciprocal_distance_mse_pair(output, event).item() == pytest.approx((1 + 0 + 0 + 9 / 4) / 4)
    assert reciprocal_distance_mse_pair(output, silent).item() == pytest.approx((0 + 0 + 0 + 1) / 4)  # no event: weight 1


@pytest.mark.parametrize("pair_loss", ["mse", "ce", "mse-reciprocal-distance"])
def test_variants_without_any_event_equal_the_baseline(pair_loss):
    """No scope has an event: the faster variants' gathered sets are empty and only the silent sum remains."""
    output = torch.randn(2, 3, 3, 4, 5, dtype=torch.float64)
    target = torch.zeros(2, 3, 6, 5, 5, dtype=torch.float64)
    ref_loss, ref_grad = loss_and_grad("baseline", output, target, pair_loss)
    for variant in FAST_VARIANTS:
        loss, grad = loss_and_grad(variant, output, target, pair_loss)
        torch.testing.assert_close(loss, ref_loss, rtol=1e-12, atol=0)
        torch.testing.assert_close(grad, ref_grad, rtol=1e-12, atol=1e-15)
