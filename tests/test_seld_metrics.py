"""DCASE SELD metrics on hand-made cases."""

from __future__ import annotations

import numpy as np
import pytest

from sslkit.seld import SeldEvents, read_dcase_csv
from sslkit.seld_metrics import seld_metrics


def events(rows):
    a = np.array(rows, dtype=float).reshape(-1, 5)
    return SeldEvents(a[:, 0].astype(int), a[:, 1].astype(int), a[:, 2], a[:, 3], a[:, 4])


TRUTH = events([[0, 0, 30, 0, 2.0], [0, 1, -60, 10, 3.0], [1, 0, 35, 0, 2.0], [1, 0, 120, -20, 1.5]])


EXACT_MATCH_DEG = float(np.degrees(np.arccos(1 / (1 + 1e-10))))
"""What the official scorer reports for an exact match (its 1e-10 term inside the norms): about 0.0008°."""


def test_perfect_prediction_strict():
    m = seld_metrics([TRUTH], [TRUTH], n_classes=3, protocol="strict")
    assert m["f_ld"] == pytest.approx(1.0) and m["doae_deg"] == pytest.approx(0.0, abs=1e-6) and m["rde"] == 0.0
    assert m["er"] == 0.0 and m["lr"] == pytest.approx(1.0) and m["seld_score"] == pytest.approx(0.0, abs=1e-6)


def test_official_protocol_averages_over_all_classes_and_stops_before_the_last_reference_frame():
    truth = events([[f, 0, 0, 0, 2.0] for f in range(4)])  # class 0 in frames 0..3; classes 1..3 never occur
    pred = events([[f, 0, 0, 0, 2.0] for f in range(5)])  # exact, plus an extra prediction in frame 4
    official = seld_metrics([pred], [truth], n_classes=4)
    assert official["f_ld"] == pytest.approx(0.25)  # F = 1 for class 0, 0 for the three absent classes
    assert official["lr"] == pytest.approx(0.25) and official["er"] == pytest.approx(0.0)  # frames 0..2 only
    assert official["doae_deg"] == pytest.approx(EXACT_MATCH_DEG, rel=1e-3) and 8.0e-4 < EXACT_MATCH_DEG < 8.2e-4
    assert official["rde"] == pytest.approx(0.0, abs=1e-12)
    assert official["seld_score"] == pytest.approx((EXACT_MATCH_DEG / 180 / 2 + 3 * 1.0) / 4)  # absent class: 1 − F = 1
    assert [c["tp"] for c in official["per_class"]] == [3, 0, 0, 0]
    strict = seld_metrics([pred], [truth], n_classes=4, protocol="strict")
    assert strict["f_ld"] == pytest.approx(4 / (4 + 0.5))  # frames 0..4, the extra one a false positive; class 0 only
    assert strict["er"] == pytest.approx(1 / 4) and strict["lr"] == pytest.approx(1.0) and strict["doae_deg"] == pytest.approx(0.0, abs=1e-6)
    assert strict["per_class"][1]["f"] is None


def test_a_reference_in_a_far_frame_allocates_nothing_per_frame():
    # the official protocol scores frames 0 … last reference frame − 1: a reference at frame 2·10⁹ once
    # made a list of every such frame (16 GB); the only reference sits in that last frame, so none is scored
    pred, truth = events([[0, 0, 30, 0, 2.0], [5, 0, 30, 0, 2.0]]), events([[5, 0, 30, 0, 2.0], [2_000_000_000, 0, 30, 0, 2.0]])
    m = seld_metrics([pred], [truth], n_classes=1)
    assert m["per_class"][0]["tp"] == 1 and m["per_class"][0]["fp"] == 1 and m["er"] == pytest.approx(1.0)
    unscored = seld_metrics([events([[0, 0, 30, 0, 2.0]])], [events([[2_000_000_000, 0, 30, 0, 2.0]])], n_classes=1)
    assert unscored["er"] is None and unscored["per_class"][0]["fp"] == 1  # no reference scored: no error rate, not 1/ε


def test_swapped_class_is_all_wrong():
    swapped = events([[0, 1, 30, 0, 2.0], [0, 0, -60, 10, 3.0]])
    truth = events([[0, 0, 30, 0, 2.0], [0, 1, -60, 10, 3.0]])
    m = seld_metrics([swapped], [truth], n_classes=2, protocol="strict")
    assert m["f_ld"] == 0.0 and m["doae_deg"] == pytest.approx(90.0)
    assert m["er"] == pytest.approx(1.0)  # each class's pair is matched but 90° off: two insertions for two references


def test_when_nothing_matches():
    pred, truth = events([[0, 1, 30, 0, 2.0]]), events([[0, 0, 30, 0, 2.0], [1, 0, 30, 0, 2.0]])
    strict = seld_metrics([pred], [truth], n_classes=2, protocol="strict")
    assert (strict["doae_deg"], strict["rde"]) == (180.0, 1.0)  # the strict protocol's worst values
    official = seld_metrics([pred], [truth], n_classes=2)
    assert official["doae_deg"] is None and official["rde"] is None and official["f_ld"] == 0.0  # the official scorer's NaN
    assert official["seld_score"] == pytest.approx(1.0) and official["er"] == pytest.approx(1.0)  # frame 0: one substitution


def test_doa_threshold_hungarian_matching_and_seld_score():
    # frame 1 holds two class-0 events; predictions come in the other order and one is 25° off
    pred = events([[0, 0, 30, 0, 2.0], [0, 1, -60, 10, 3.0], [1, 0, 120, -20, 1.5], [1, 0, 60, 0, 2.0]])
    m = seld_metrics([pred], [TRUTH], n_classes=3, protocol="strict")
    cls0 = m["per_class"][0]
    assert (cls0["tp"], cls0["fp"], cls0["fn"]) == (2, 1, 1)  # the 25°-off event is both FP and FN
    assert cls0["doae_deg"] == pytest.approx((0 + 0 + 25) / 3)
    assert m["f_ld"] == pytest.approx(np.mean([2 * 2 / (4 + 2), 1.0]))
    assert cls0["seld_score"] == pytest.approx(np.mean([1 - 2 / 3, 25 / 3 / 180, 0.0]))
    assert m["er"] == pytest.approx(1 / 4)  # frame 1: the 25° miss counts as one insertion (the official ER)


def test_distance_threshold_and_relative_distance_error():
    pred = events([[0, 0, 30, 0, 4.5]])  # relative distance error 1.25 > 1.0
    m = seld_metrics([pred], [events([[0, 0, 30, 0, 2.0]])], n_classes=1, protocol="strict")
    assert m["f_ld"] == 0.0 and m["rde"] == pytest.approx(1.25)
    closer = seld_metrics([events([[0, 0, 30, 0, 3.0]])], [events([[0, 0, 30, 0, 2.0]])], n_classes=1, protocol="strict")
    assert closer["f_ld"] == pytest.approx(1.0) and closer["seld_score"] == pytest.approx(0.5 / 3, abs=1e-6)


def test_both_dcase_formats_round_trip(tmp_path):
    from sslkit.seld import write_dcase_csv

    for fmt, columns in (("cartesian", 7), ("polar", 6)):
        write_dcase_csv(tmp_path / f"{fmt}.csv", TRUTH, fmt)
        assert {len(line.split(",")) for line in (tmp_path / f"{fmt}.csv").read_text().splitlines()} == {columns}
        back, seen = read_dcase_csv(tmp_path / f"{fmt}.csv", 3)
        assert seen == fmt
        np.testing.assert_allclose(back.distance, TRUTH.distance, atol=0.005)  # metres in both (polar files hold cm)
        np.testing.assert_allclose(back.azimuth, TRUTH.azimuth, atol=1e-4)
    (tmp_path / "mixed.csv").write_text("0,0,0,30,0,200\n1,0,0,1.0,0.0,0.0,2.0\n")
    from sslkit.errors import InputFileError

    with pytest.raises(InputFileError, match="mixes"):
        read_dcase_csv(tmp_path / "mixed.csv", 3)


def test_read_dcase_csv_errors(tmp_path):
    from sslkit.errors import InputFileError

    good = tmp_path / "a.csv"
    good.write_text("0,1,0,30,0,200\n3,0,1,-20,10,150\n")
    ev, fmt = read_dcase_csv(good, 2)
    assert fmt == "polar" and ev.frame.tolist() == [0, 3] and ev.distance.tolist() == [2.0, 1.5]
    bad = tmp_path / "b.csv"
    bad.write_text("0,5,0,30,0,2\n")
    with pytest.raises(InputFileError, match="class 5"):
        read_dcase_csv(bad, 2)
    for row in ("0,1,0,30,0,-200\n", "0,1,0,0.6,0.8,0.0,-2.0\n"):
        bad.write_text(row)
        with pytest.raises(InputFileError, match="line 1: distance -2.* is negative"):
            read_dcase_csv(bad, 2)


def test_labels_of_a_simulated_scene_round_trip_and_score_perfectly(tmp_path):
    from sslkit.seld import write_dcase_csv
    from sslkit.sims.room import simulate
    from sslkit.sims.scene import resolve_scene
    from sslkit.sims.seld_labels import dcase_labels

    scene = resolve_scene({
        "fs": 24000, "duration": 1.0, "room": {"dimensions": [5.0, 4.0, 3.0], "rt60": 0.3},
        "mics": {"positions": [[2.5, 2.0, 1.5], [2.55, 2.0, 1.5], [2.5, 2.05, 1.5], [2.5, 2.0, 1.55]]},
        "sources": [{"signal": "bell", "position": [4.0, 2.0, 1.5]}, {"signal": "speech", "position": [2.5, 3.5, 2.0], "start": 0.5}],
    })
    rec, _ = simulate(scene)
    classes = ["speech", "bell"]
    labels = dcase_labels(rec, classes)
    bell = labels.cls == 1
    assert bell.sum() == 10 and np.allclose(labels.azimuth[bell], 0.0, atol=2) and np.allclose(labels.distance[bell], 1.49, atol=0.02)
    speech = labels.cls == 0
    assert speech.sum() == 5 and labels.frame[speech].min() == 5 and np.all(labels.azimuth[speech] > 80)
    write_dcase_csv(tmp_path / "meta.csv", labels, "polar")
    back, _ = read_dcase_csv(tmp_path / "meta.csv", 2)
    assert seld_metrics([back], [labels], n_classes=2, protocol="strict")["f_ld"] == pytest.approx(1.0)


def test_evaluate_seld_cli(cli, tmp_path):
    import json

    from conftest import assert_one_line_error

    (tmp_path / "pred").mkdir()
    (tmp_path / "truth").mkdir()
    (tmp_path / "truth" / "clip1.csv").write_text("0,0,0,30,0,200\n1,1,0,-60,10,300\n")
    (tmp_path / "pred" / "clip1.csv").write_text("0,0,0,32,1,210\n1,1,0,-90,10,300\n")  # second is 30° off
    result = cli("evaluate-seld", "--pred", tmp_path / "pred", "--truth", tmp_path / "truth", "--classes", 2, "--protocol", "strict")
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "pred" / "seld_metrics.json").read_text())
    assert metrics["f_ld"] == pytest.approx(0.5) and "polar format" in result.output
    assert set(metrics) >= {"f_ld", "doae_deg", "rde", "seld_score", "er", "lr", "per_class"}
    from sslkit.seld import write_dcase_csv

    cartesian, _ = read_dcase_csv(tmp_path / "pred" / "clip1.csv", 2)
    (tmp_path / "pred_xyz").mkdir()
    write_dcase_csv(tmp_path / "pred_xyz" / "clip1.csv", cartesian, "cartesian")  # the same predictions, distances in metres
    again = cli("evaluate-seld", "--pred", tmp_path / "pred_xyz", "--truth", tmp_path / "truth", "--classes", 2, "--protocol", "strict",
                "--out", tmp_path / "scores")
    assert again.exit_code == 0 and "cartesian format" in again.output
    assert json.loads((tmp_path / "scores" / "seld_metrics.json").read_text())["f_ld"] == pytest.approx(0.5)
    (tmp_path / "pred" / "clip1.csv").write_text("0,0,0,1.0,0.0,0.0,210\n")  # Cartesian holds metres: 210 m is cm by mistake
    assert_one_line_error(cli("evaluate-seld", "--pred", tmp_path / "pred", "--truth", tmp_path / "truth", "--classes", 2), "84×", "other unit")
    (tmp_path / "pred" / "clip1.csv").write_text("0,7,0,32,1,210\n")
    assert_one_line_error(cli("evaluate-seld", "--pred", tmp_path / "pred", "--truth", tmp_path / "truth", "--classes", 2), "class 7")
    (tmp_path / "pred" / "clip1.csv").write_text("0,0,0,32,100,210\n")
    assert_one_line_error(cli("evaluate-seld", "--pred", tmp_path / "pred", "--truth", tmp_path / "truth", "--classes", 2), "elevation 100")
    (tmp_path / "pred" / "clip1.csv").write_text("0,0,0,32,1\n")
    assert_one_line_error(cli("evaluate-seld", "--pred", tmp_path / "pred", "--truth", tmp_path / "truth", "--classes", 2), "clip1.csv", "without a distance")
    (tmp_path / "pred" / "clip1.csv").write_text("0,0,0,32,1,210\n")
    (tmp_path / "pred" / "clip2.csv").write_text("0,0,0,32,1,210\n")
    assert_one_line_error(cli("evaluate-seld", "--pred", tmp_path / "pred", "--truth", tmp_path / "truth" / "clip1.csv", "--classes", 2),
                          "2 prediction files")
