"""Property tests of every parser: random bytes and random mutations of valid files give a valid
result or a UserError (which the CLI prints as one line with exit code 2), never another exception."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import assert_one_line_error, small_scene
from sslkit.errors import UserError
from sslkit.localization.track import read_positions
from sslkit.models.checkpoint import load_checkpoint, save_checkpoint
from sslkit.models.ngcc import NGCCPHAT
from sslkit.recording import read_mics, read_sources
from sslkit.seld import read_dcase_csv
from sslkit.sims.room import make_room
from sslkit.sims.scene import load_template, resolve_scene
from sslkit.tdoa import read_tdoa_csv

EXAMPLES = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
HOSTILE_CELLS = ["", "nan", "inf", "-inf", "-1", "0", "1e308", "1e-320", "abc", "1,2", '"', "#", "💥", "9" * 400, " ", "0x10", "true"]
MIC_IDS = ["1", "2", "3", "4"]

VALID = {
    "mics.csv": "mic_id,x,y,z\n1,0.5,0.5,1.0\n2,3.5,0.6,1.2\n3,3.4,2.5,0.8\n4,0.7,2.4,1.6\n",
    "sources.csv": "time,source_id,x,y,z\n0,0,2.0,1.5,1.2\n0.1,0,2.1,1.5,1.2\n0.1,1,1.0,2.0,1.0\n",
    "positions.csv": "time,x,y,z,confidence,n_inliers\n0.064,2.0,1.5,1.2,0.9,6\n0.128,nan,nan,nan,0,0\n",
    "tdoa.csv": "frame,time,mic_i,mic_j,rank,tdoa_s,delta_m,score\n0,0.064,1,2,1,0.001,0.343,0.8\n0,0.064,1,3,1,-0.002,-0.686,0.5\n1,0.128,1,2,2,nan,nan,0\n",
    "dcase.csv": "0,1,0,30,10,250\n3,0,1,-120,-5,180\n",
}
PARSERS: dict[str, Callable[[Path], object]] = {
    "mics.csv": read_mics,
    "sources.csv": read_sources,
    "positions.csv": read_positions,
    "tdoa.csv": lambda path: read_tdoa_csv(path, MIC_IDS),
    "dcase.csv": lambda path: read_dcase_csv(path, 13),
}


def parse_or_user_error(parser: Callable[[Path], object], path: Path, names_file: bool = True) -> None:
    """The parser returns, or raises a UserError whose message is one line naming the file (or,
    for a scene, where in it: the CLI adds the file's name, see test_hostile_inputs)."""
    try:
        parser(path)
    except UserError as err:
        message = str(err)
        assert "\n" not in message.strip(), message
        assert not names_file or path.name in message, message


def mutate_cells(text: str, data: st.DataObject) -> str:
    """Replace, drop or duplicate random cells and lines of a CSV text."""
    lines = text.splitlines()
    for _ in range(data.draw(st.integers(1, 4))):
        if not lines:
            break
        r = data.draw(st.integers(0, len(lines) - 1))
        cells = lines[r].split(",")
        action = data.draw(st.sampled_from(["cell", "drop_cell", "add_cell", "drop_line", "dup_line"]))
        c = data.draw(st.integers(0, len(cells) - 1))
        if action == "cell":
            cells[c] = data.draw(st.sampled_from(HOSTILE_CELLS) | st.text(max_size=8))
        elif action == "drop_cell":
            del cells[c]
        elif action == "add_cell":
            cells.insert(c, data.draw(st.sampled_from(HOSTILE_CELLS)))
        if action == "drop_line":
            del lines[r]
        elif action == "dup_line":
            lines.insert(r, lines[r])
        else:
            lines[r] = ",".join(cells)
    return "\n".join(lines) + "\n"


def mutate_bytes(raw: bytes, data: st.DataObject) -> bytes:
    """Flip, insert or delete random bytes, or truncate."""
    out = bytearray(raw)
    for _ in range(data.draw(st.integers(1, 6))):
        if not out:
            break
        i = data.draw(st.integers(0, len(out) - 1))
        action = data.draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        if action == "flip":
            out[i] ^= data.draw(st.integers(1, 255))
        elif action == "insert":
            out.insert(i, data.draw(st.integers(0, 255)))
        elif action == "delete":
            del out[i]
        else:
            del out[i:]
    return bytes(out)


@pytest.mark.parametrize("name", list(PARSERS))
def test_valid_files_parse(tmp_path, name):
    (tmp_path / name).write_text(VALID[name])
    PARSERS[name](tmp_path / name)


@pytest.mark.parametrize("name", list(PARSERS))
@EXAMPLES
@given(data=st.data())
def test_csv_parsers_on_mutated_files(tmp_path, name, data):
    path = tmp_path / name
    path.write_text(mutate_cells(VALID[name], data))
    parse_or_user_error(PARSERS[name], path)


@pytest.mark.parametrize("name", list(PARSERS))
@EXAMPLES
@given(raw=st.binary(max_size=300), data=st.data())
def test_csv_parsers_on_random_and_bit_flipped_bytes(tmp_path, name, raw, data):
    path = tmp_path / name
    for content in (raw, mutate_bytes(VALID[name].encode(), data)):
        path.write_bytes(content)
        parse_or_user_error(PARSERS[name], path)


def scene_value() -> st.SearchStrategy:
    leaves = st.sampled_from([None, True, 0, -1, 1.5, 1e308, float("nan"), float("inf"), "abc", "", [], {}, [1, 2], [5, 1],
                              {"uniform": [3, 1]}, {"choice": []}, {"randint": [0.5, 2]}, {"grid": [1, 2]}])
    return st.recursive(leaves, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["uniform", "x", "positions"]), inner, max_size=2),
                        max_leaves=4)


def replace_random_leaf(node: object, data: st.DataObject) -> object:
    """The scene with one randomly chosen value (at any depth) replaced by a hostile one."""
    if isinstance(node, dict) and node:
        key = data.draw(st.sampled_from(sorted(node)))
        deeper = data.draw(st.booleans())
        return {**node, key: replace_random_leaf(node[key], data) if deeper else data.draw(scene_value())}
    if isinstance(node, list) and node:
        i = data.draw(st.integers(0, len(node) - 1))
        return [*node[:i], replace_random_leaf(node[i], data), *node[i + 1 :]]
    return data.draw(scene_value())


def load_and_resolve(path: Path) -> None:
    scene = resolve_scene(load_template(path))
    make_room(scene.room, scene.fs, scene.c)


@EXAMPLES
@given(data=st.data())
def test_scene_yaml_with_a_hostile_value_anywhere(tmp_path, data):
    path = tmp_path / "scene.yaml"
    path.write_text(yaml.safe_dump(replace_random_leaf(small_scene(), data)))
    parse_or_user_error(load_and_resolve, path, names_file=False)


@EXAMPLES
@given(raw=st.binary(max_size=300), data=st.data())
def test_scene_yaml_from_random_and_mutated_bytes(tmp_path, raw, data):
    path = tmp_path / "scene.yaml"
    for content in (raw, mutate_bytes(yaml.safe_dump(small_scene()).encode(), data)):
        path.write_bytes(content)
        parse_or_user_error(load_and_resolve, path, names_file=False)


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(path, NGCCPHAT(max_tau=6, fs=16000, n_sinc=4, sinc_len=31, channels=4, head_channels=4), "ngcc-phat")
    return path.read_bytes()


@EXAMPLES
@given(raw=st.binary(max_size=300), data=st.data())
def test_checkpoints_from_random_and_mutated_bytes(tmp_path, tiny_checkpoint, raw, data):
    path = tmp_path / "model.pt"
    for content in (raw, mutate_bytes(tiny_checkpoint, data)):
        path.write_bytes(content)
        parse_or_user_error(lambda p: load_checkpoint(p, kind="ngcc-phat"), path)


@EXAMPLES
@given(model=st.sampled_from(["ngcc-phat", "wav2pos", "seldnet", "nope", 3]), config=st.dictionaries(st.sampled_from(["fs", "max_tau", "dim"]), scene_value(), max_size=3))
def test_checkpoints_with_wrong_contents(tmp_path, model, config):
    buffer = io.BytesIO()
    torch.save({"model": model, "config": config, "state_dict": {"w": torch.zeros(2)}}, buffer)
    path = tmp_path / "model.pt"
    path.write_bytes(buffer.getvalue())
    parse_or_user_error(lambda p: load_checkpoint(p), path)


@pytest.mark.parametrize("seed", range(4))
def test_mutated_mics_csv_through_the_cli_is_one_line_or_a_result(cli, tmp_path, seed):
    from test_hostile_inputs import MICS, user_recording

    rec = user_recording(tmp_path / "rec", mics=MICS)
    rng = np.random.default_rng(seed)
    lines = (rec / "mics.csv").read_text().splitlines()
    row = rng.integers(1, len(lines))
    cells = lines[row].split(",")
    cells[rng.integers(len(cells))] = HOSTILE_CELLS[rng.integers(len(HOSTILE_CELLS))]
    lines[row] = ",".join(cells)
    (rec / "mics.csv").write_text("\n".join(lines) + "\n")
    result = cli("locate", rec, "--no-plot")
    if result.exit_code != 0:
        assert_one_line_error(result)
