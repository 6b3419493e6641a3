"""`sslkit import-luvira` on a small fake folder in the LuViRA layout."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from conftest import assert_one_line_error
from sslkit.recording import read_recording as load_recording
from sslkit.recording import room_channels

SRC_FS = 96000


def fake_luvira(folder, n_mics: int = 5, seconds: float = 1.0, mocap_mics: bool = True):
    folder.mkdir()
    rng = np.random.default_rng(0)
    for k in range(1, n_mics + 2):  # the last track is the near-source mic
        sf.write(folder / f"Track {k}.wav", 0.1 * rng.standard_normal(int(seconds * SRC_FS)), SRC_FS, subtype="FLOAT")
    mics_mm = rng.uniform(-3000, 3000, (n_mics, 3))
    if mocap_mics:  # motion capture: one x/y/z column triple per mic, 20 noisy rows
        header = ",".join(f"Mic{k} X,Mic{k} Y,Mic{k} Z" for k in range(1, n_mics + 1))
        rows = [",".join(f"{v:.2f}" for v in (mics_mm + rng.normal(0, 1, mics_mm.shape)).ravel()) for _ in range(20)]
        (folder / "mics.csv").write_text(header + "\n" + "\n".join(rows) + "\n")
    else:
        np.savetxt(folder / "mics.txt", mics_mm, fmt="%.2f")
    t = np.arange(0, seconds, 0.01)
    speaker = np.stack([1000 * np.cos(t), 500 * t, 1200 + 0 * t], 1)
    lines = ["Frame,Time,Speaker X,Speaker Y,Speaker Z"] + [f"{i},{ti:.2f},{x:.1f},{y:.1f},{z:.1f}" for i, (ti, (x, y, z)) in enumerate(zip(t, speaker))]
    (folder / "mocap.csv").write_text("\n".join(lines) + "\n")
    return mics_mm, t, speaker


def test_import_luvira_converts_units_rates_and_near_channel(cli, tmp_path):
    mics_mm, t, speaker = fake_luvira(tmp_path / "speech3")
    out = tmp_path / "rec"
    result = cli("import-luvira", tmp_path / "speech3", "--mic-positions", tmp_path / "speech3" / "mics.csv",
                 "--truth", tmp_path / "speech3" / "mocap.csv", "--out", out, "--shift", "3.5,4,0")
    assert result.exit_code == 0, result.output
    rec = load_recording(out)
    assert rec.fs == 16000 and rec.audio.shape == (16000, 6)
    np.testing.assert_allclose(rec.mics[:5], mics_mm / 1000 + [3.5, 4.0, 0.0], atol=2e-3)  # median of noisy frames
    assert room_channels(rec).n_mics == 5
    np.testing.assert_allclose(rec.sources.xyz[10], speaker[10] / 1000 + [3.5, 4.0, 0.0], atol=1e-4)  # file has 0.1 mm


def test_import_luvira_static_table_and_errors(cli, tmp_path):
    fake_luvira(tmp_path / "music1", mocap_mics=False)
    folder = tmp_path / "music1"
    result = cli("import-luvira", folder, "--mic-positions", folder / "mics.txt", "--truth", folder / "mocap.csv",
                 "--map", "time=Time,x=Speaker X,y=Speaker Y,z=Speaker Z")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "music1-sslkit" / "audio.wav").is_file()
    assert_one_line_error(cli("import-luvira", folder, "--mic-positions", folder / "mics.txt", "--truth", folder / "mocap.csv",
                              "--map", "x=Nope", "--out", tmp_path / "bad"), "no column 'Nope'")
    (folder / "Track 3.wav").unlink()
    assert_one_line_error(cli("import-luvira", folder, "--mic-positions", folder / "mics.txt", "--truth", folder / "mocap.csv",
                              "--out", tmp_path / "bad"), "not 1..")
    for where, problem in ((tmp_path / "absent", "no such folder"), (folder / "Track 1.wav", "is a file")):  # once tracebacks
        assert_one_line_error(cli("import-luvira", where, "--mic-positions", folder / "mics.txt", "--truth", folder / "mocap.csv",
                                  "--out", tmp_path / "bad"), where.name, problem)
    assert not (tmp_path / "bad").exists()


LUVIRA_PUBLISHED_MICS = """Mean microphone locations over the Grid1 trajectory, in millimetres
mic1 =  [2446.54251401408, 1739.80661950704, 1153.6641521126]
mic2 =  [2878.14385070423, -648.52096387323, 047.42606478873]
mic3 =  [1446.54251401408, 739.80661950704, 153.6641521126]
mic4 =  [-446.54251401408, 2739.80661950704, 1553.6641521126]
mic5 =  [346.54251401408, -1739.80661950704, 953.6641521126]
mic6 =  [1046.54251401408, 39.80661950704, 53.6641521126]
mic7 =  [2046.54251401408, 1039.80661950704, 1053.6641521126]
mic8 =  [3046.54251401408, -39.80661950704, 453.6641521126]
mic9 =  [46.54251401408, 339.80661950704, 753.6641521126]
mic10 =  [1546.54251401408, 2239.80661950704, 1353.6641521126]
mic11 =  [2646.54251401408, -1239.80661950704, 853.6641521126]
"""


def test_luvira_published_mic_positions_are_read(tmp_path):
    from sslkit.luvira import mic_positions_mm

    path = tmp_path / "microphone_locations.txt"
    path.write_text(LUVIRA_PUBLISHED_MICS)
    mics = mic_positions_mm(path, 11)
    assert mics.shape == (11, 3)
    np.testing.assert_allclose(mics[0], [2446.54251401408, 1739.80661950704, 1153.6641521126])
    np.testing.assert_allclose(mics[1], [2878.14385070423, -648.52096387323, 47.42606478873])  # "047.4…": a leading zero
    from sslkit.errors import InputFileError

    with pytest.raises(InputFileError, match="lists 11 microphones, but there are 5"):
        mic_positions_mm(path, 5)


def test_mic_position_files_that_cannot_be_right_are_refused_before_reading_audio(cli, tmp_path, monkeypatch):
    fake_luvira(tmp_path / "speech1", mocap_mics=False)
    folder = tmp_path / "speech1"
    import sslkit.recording

    def no_audio(*args, **kwargs):
        raise AssertionError("audio read before the mic positions were checked")

    monkeypatch.setattr(sslkit.recording, "read_audio", no_audio)
    (folder / "short.txt").write_text("Mic positions\nmic1 = [1, 2]\n")
    assert_one_line_error(cli("import-luvira", folder, "--mic-positions", folder / "short.txt", "--truth", folder / "mocap.csv",
                              "--out", tmp_path / "bad"), "short.txt", "line 2", "micK = [x, y, z]")
    (folder / "same.txt").write_text("Mic positions\n" + "".join(f"mic{k} = [1000, 500, 1000]\n" for k in range(1, 6)))
    assert_one_line_error(cli("import-luvira", folder, "--mic-positions", folder / "same.txt", "--truth", folder / "mocap.csv",
                              "--out", tmp_path / "bad"), "same.txt", "1 and 2 have the same position")
    assert not (tmp_path / "bad").exists()


def test_ground_truth_in_any_row_order_with_dropouts_and_outside_the_audio(cli, tmp_path):
    """Shuffled rows were interpolated out of order (1.0 m read as 0.97), dropouts bridged by straight
    lines, and truth outside the audio written as an empty sources.csv; all silently."""
    def imported(name: str, edit):
        folder = tmp_path / name
        fake_luvira(folder)
        lines = (folder / "mocap.csv").read_text().splitlines()
        (folder / "mocap.csv").write_text("\n".join(edit(lines)) + "\n")
        result = cli("import-luvira", folder, "--mic-positions", folder / "mics.csv", "--truth", folder / "mocap.csv", "--out", tmp_path / f"{name}-rec")
        return result

    assert imported("ordered", lambda lines: lines).exit_code == 0
    assert imported("shuffled", lambda lines: lines[:1] + lines[1:][::-1]).exit_code == 0
    ordered, shuffled = (load_recording(tmp_path / f"{name}-rec").sources for name in ("ordered", "shuffled"))
    np.testing.assert_array_equal(shuffled.xyz, ordered.xyz)
    assert imported("dropout", lambda lines: lines[:21] + lines[51:]).exit_code == 0  # rows 0.20–0.49 s missing
    times = load_recording(tmp_path / "dropout-rec").sources.time
    assert not np.any((times > 0.195) & (times < 0.495)) and np.any(np.isclose(times, 0.19)) and np.any(np.isclose(times, 0.5))
    later = imported("later", lambda lines: lines[:1] + [",".join([c[0], f"{float(c[1]) + 1000:.2f}", *c[2:]]) for c in (ln.split(",") for ln in lines[1:])])
    assert_one_line_error(later, "mocap.csv", "outside the 1 s of audio")
    assert not (tmp_path / "later-rec").exists()
