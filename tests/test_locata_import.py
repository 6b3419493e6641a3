"""import-locata on a small fixture built to the LOCATA challenge's documented layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from conftest import assert_one_line_error

FS = 8000
SOURCE = np.array([3.5, 2.5, 1.2])
MICS = np.array([[2.0, 2.0, 1.0], [2.3, 2.0, 1.1], [2.0, 2.35, 0.9], [2.1, 2.1, 1.4], [1.8, 2.2, 1.2]])
HEADER = ["year", "month", "day", "hour", "minute", "second"]


def clock(start: float, step: float, n: int) -> list[str]:
    """LOCATA time columns: 25 January 2017, 15:40, seconds from ``start``."""
    return [f"2017\t1\t25\t15\t40\t{start + i * step:.6f}" for i in range(n)]


def locata_fixture(root: Path, mics: np.ndarray = MICS) -> Path:
    folder = root / "dev" / "task1" / "recording1" / "dummy5"
    folder.mkdir(parents=True)
    n = FS
    spectrum = np.fft.rfft(np.random.default_rng(0).normal(size=n))
    delays = np.linalg.norm(mics - SOURCE, axis=1) / 343.0
    freqs = np.fft.rfftfreq(n, 1 / FS)
    audio = np.fft.irfft(spectrum[None] * np.exp(-2j * np.pi * freqs[None] * delays[:, None]), n).T
    sf.write(folder / "audio_array_dummy5.wav", (0.5 * audio / np.abs(audio).max()).astype(np.float32), FS)
    (folder / "audio_array_timestamps_dummy5.txt").write_text("\t".join(HEADER) + "\n" + "\n".join(clock(25.0, 1 / FS, n)) + "\n")
    pose = ["\t".join(map(str, [2.0, 2.0, 1.0, 0, 1, 0, *np.eye(3).ravel(), *m.ravel()])) for m in (mics, mics + 0.001, mics)]
    columns = ["x", "y", "z", "ref_vec_x", "ref_vec_y", "ref_vec_z", *(f"rotation_{i}{j}" for i in (1, 2, 3) for j in (1, 2, 3)),
               *(f"mic{k}_{a}" for k in range(1, len(mics) + 1) for a in "xyz")]
    (folder / "position_array_dummy5.txt").write_text("\t".join(HEADER + columns) + "\n" + "\n".join(f"{t}\t{p}" for t, p in zip(clock(25.0, 0.4, 3), pose)) + "\n")
    (folder / "position_source_talker1.txt").write_text("\t".join(HEADER + ["x", "y", "z"]) + "\n"
                                                       + "\n".join(f"{t}\t{SOURCE[0]}\t{SOURCE[1]}\t{SOURCE[2]}" for t in clock(25.05, 1 / 120, 100)) + "\n")
    return folder


def test_import_locata_and_locate(cli, tmp_path):
    import sslkit

    locata_fixture(tmp_path / "LOCATA")
    result = cli("import-locata", tmp_path / "LOCATA", "--out", tmp_path / "out", "--fs", FS)
    assert result.exit_code == 0, result.output
    rec = sslkit.load_recording(tmp_path / "out" / "task1-recording1-dummy5")  # <task>-<recording>-<array>
    np.testing.assert_allclose(rec.mics, MICS, atol=1e-6)  # the median of the rows
    assert rec.fs == FS and rec.n_mics == 5
    np.testing.assert_allclose(rec.sources.time[[0, -1]], [0.05, 0.05 + 99 / 120], atol=1e-6)  # seconds from the audio's start
    track = sslkit.locate(rec, "srp-phat", static=True, bounds=[[0.0, 0.0, 0.0], [5.0, 5.0, 2.5]])
    assert np.linalg.norm(track.xyz[0] - SOURCE) < 0.1


def test_import_locata_refuses_moving_arrays(cli, tmp_path):
    folder = locata_fixture(tmp_path / "LOCATA")
    lines = (folder / "position_array_dummy5.txt").read_text().splitlines()
    moved = lines[:-1] + ["\t".join(lines[-1].split("\t")[:-1] + [str(float(lines[-1].split("\t")[-1]) + 0.5)])]
    (folder / "position_array_dummy5.txt").write_text("\n".join(moved) + "\n")
    assert_one_line_error(cli("import-locata", folder, "--out", tmp_path / "out"), "position_array_dummy5.txt", "the mics move")
    assert not (tmp_path / "out").exists()


def test_import_locata_refuses_mics_at_one_position(cli, tmp_path):
    folder = locata_fixture(tmp_path / "LOCATA", np.vstack([MICS[:1], MICS[:1], MICS[2:]]))
    assert_one_line_error(cli("import-locata", folder, "--out", tmp_path / "out"), "position_array_dummy5.txt", "1 and 2 have the same position")
    assert not (tmp_path / "out").exists()


def edit_line(path: Path, line: int, edit) -> None:
    """Replace line ``line`` (1 = the header) of a LOCATA table by ``edit`` of its cells."""
    lines = path.read_text().splitlines()
    lines[line - 1] = "\t".join(edit(lines[line - 1].split("\t")))
    path.write_text("\n".join(lines) + "\n")


def test_import_locata_names_bad_dates_and_truth_outside_the_audio(cli, tmp_path):
    """Once a ValueError traceback (month 13, a NaN date) or silently kept (positions centuries after the audio)."""
    folder = locata_fixture(tmp_path / "a")
    edit_line(folder / "audio_array_timestamps_dummy5.txt", 2, lambda cells: cells[:1] + ["13"] + cells[2:])
    assert_one_line_error(cli("import-locata", folder, "--out", tmp_path / "out"), "audio_array_timestamps_dummy5.txt", "line 2", "not a date")
    folder = locata_fixture(tmp_path / "b")
    edit_line(folder / "position_source_talker1.txt", 4, lambda cells: ["nan"] + cells[1:])
    assert_one_line_error(cli("import-locata", folder, "--out", tmp_path / "out"), "position_source_talker1.txt", "line 4", "not a date")
    folder = locata_fixture(tmp_path / "c")
    source = folder / "position_source_talker1.txt"
    source.write_text(source.read_text().replace("2017\t1\t25", "2999\t1\t25"))
    assert_one_line_error(cli("import-locata", folder, "--out", tmp_path / "out"), "position_source_talker1.txt", "none of its times")
    assert not (tmp_path / "out").exists()


def test_import_locata_leaves_out_rows_without_a_position(cli, tmp_path):
    import sslkit

    folder = locata_fixture(tmp_path / "LOCATA")
    edit_line(folder / "position_source_talker1.txt", 4, lambda cells: cells[:6] + ["nan"] * 3)
    result = cli("import-locata", folder, "--out", tmp_path / "out")
    assert result.exit_code == 0 and "1 of 100 rows have no position" in result.output
    truth = sslkit.load_recording(tmp_path / "out" / "task1-recording1-dummy5").sources
    assert len(truth.time) == 99 and np.isfinite(truth.xyz).all()


def test_a_failing_recording_leaves_no_folder_of_the_import(cli, tmp_path):
    """task1/recording1 imported, then recording2's month 13: the first folder was left behind."""
    import shutil

    first = locata_fixture(tmp_path / "LOCATA")
    second = first.parents[1] / "recording2" / first.name
    shutil.copytree(first, second)
    edit_line(second / "audio_array_timestamps_dummy5.txt", 2, lambda cells: cells[:1] + ["13"] + cells[2:])
    assert_one_line_error(cli("import-locata", tmp_path / "LOCATA", "--out", tmp_path / "out"), "recording2", "not a date")
    assert not (tmp_path / "out").exists()


def test_import_locata_names_a_missing_folder_and_one_without_recordings(cli, tmp_path):
    (tmp_path / "empty").mkdir()
    assert_one_line_error(cli("import-locata", tmp_path / "absent", "--out", tmp_path / "out"), "absent", "no such folder")
    assert_one_line_error(cli("import-locata", tmp_path / "empty", "--out", tmp_path / "out"), "empty", "no LOCATA recordings")
    assert not (tmp_path / "out").exists()
