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


def test_perfect_prediction():
    m = seld_metrics([TRUTH], [TRUTH], n_classes=3)
    assert m["f_ld"] == 1.0 and m["doae_deg"] == pytest.approx(0.0, abs=1e-6) and m["rde"] == 0.0


def test_swapped_class_is_all_wrong():
    swapped = events([[0, 1, 30, 0, 2.0], [0, 0, -60, 10, 3.0]])
    truth = events([[0, 0, 30, 0, 2.0], [0, 1, -60, 10, 3.0]])
    assert seld_metrics([swapped], [truth], n_classes=2)["f_ld"] == 0.0


def test_doa_threshold_and_hungarian_matching():
    # frame 1 holds two class-0 events; predictions come in the other order and one is 25° off
    pred = events([[0, 0, 30, 0, 2.0], [0, 1, -60, 10, 3.0], [1, 0, 120, -20, 1.5], [1, 0, 60, 0, 2.0]])
    m = seld_metrics([pred], [TRUTH], n_classes=3)
    cls0 = m["per_class"][0]
    assert (cls0["tp"], cls0["fp"], cls0["fn"]) == (2, 1, 1)  # the 25°-off event is both FP and FN
    assert cls0["doae_deg"] == pytest.approx((0 + 0 + 25) / 3)
    assert m["f_ld"] == pytest.approx(np.mean([2 * 2 / (4 + 2), 1.0]))


def test_distance_threshold():
    pred = events([[0, 0, 30, 0, 4.5]])  # relative distance error 1.25 > 1.0
    m = seld_metrics([pred], [events([[0, 0, 30, 0, 2.0]])], n_classes=1)
    assert m["f_ld"] == 0.0 and m["rde"] == pytest.approx(1.25)


def test_read_dcase_csv_errors(tmp_path):
    from sslkit.errors import InputFileError

    good = tmp_path / "a.csv"
    good.write_text("0,1,0,30,0,200\n3,0,1,-20,10,150\n")
    ev = read_dcase_csv(good, 2)
    assert ev.frame.tolist() == [0, 3] and ev.distance.tolist() == [200.0, 150.0]
    bad = tmp_path / "b.csv"
    bad.write_text("0,5,0,30,0,2\n")
    with pytest.raises(InputFileError, match="class 5"):
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
    write_dcase_csv(tmp_path / "meta.csv", labels)
    back = read_dcase_csv(tmp_path / "meta.csv", 2)
    back.distance = back.distance / 100  # cm in the file
    assert seld_metrics([back], [labels], n_classes=2)["f_ld"] == 1.0


def test_evaluate_seld_cli(cli, tmp_path):
    import json

    from conftest import assert_one_line_error

    (tmp_path / "pred").mkdir()
    (tmp_path / "truth").mkdir()
    (tmp_path / "truth" / "clip1.csv").write_text("0,0,0,30,0,200\n1,1,0,-60,10,300\n")
    (tmp_path / "pred" / "clip1.csv").write_text("0,0,0,32,1,210\n1,1,0,-90,10,300\n")  # second is 30° off
    result = cli("evaluate-seld", "--pred", tmp_path / "pred", "--truth", tmp_path / "truth", "--classes", 2)
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "pred" / "seld_metrics.json").read_text())
    assert metrics["f_ld"] == pytest.approx(0.5)
    (tmp_path / "pred" / "clip1.csv").write_text("0,7,0,32,1,210\n")
    assert_one_line_error(cli("evaluate-seld", "--pred", tmp_path / "pred", "--truth", tmp_path / "truth", "--classes", 2), "class 7")
