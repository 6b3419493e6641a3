"""Shared fixtures: small scenes and a CLI runner."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from sslkit.cli import app

FS = 16000
SPEED_OF_SOUND = 343.0


@pytest.fixture
def cli():
    """Invoke the sslkit CLI in-process; returns the click Result."""
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)

    return invoke


def small_scene(**overrides) -> dict:
    """A 0.5 s two-source scene in a small room: quick to simulate."""
    scene = {
        "fs": FS,
        "duration": 0.5,
        "room": {"dimensions": [4.0, 3.0, 2.5], "rt60": 0.3},
        "mics": {"positions": [[1.0, 1.0, 1.2], [1.5, 1.2, 1.3], [2.0, 1.0, 1.0], [1.2, 2.0, 1.4]]},
        "sources": [{"signal": "noise", "position": [3.0, 2.0, 1.5]}],
        "noise": {"snr_db": 20.0},
    }
    scene.update(overrides)
    return scene


def free_field_recording(n_mics: int, source: np.ndarray, seed: int = 0, room: tuple[float, float, float] = (4.0, 4.0, 2.5)):
    """0.5 s of white noise from ``source`` heard in the free field by ``n_mics`` mics drawn
    uniformly in ``room`` (delays by linear interpolation); the room is the recording's scene."""
    from sslkit.recording import Recording

    rng = np.random.default_rng(seed)
    mics = rng.uniform([0, 0, 0], room, (n_mics, 3))
    signal = rng.standard_normal(FS)
    delays = np.linalg.norm(mics - source, axis=1) / SPEED_OF_SOUND * FS
    audio = np.stack([np.interp(np.arange(FS // 2) + 400 - d, np.arange(FS), signal) for d in delays], 1).astype(np.float32)
    return Recording(audio, FS, [str(k) for k in range(n_mics)], mics, None, {"room": {"dimensions": list(room)}})


def assert_one_line_error(result, *fragments: str) -> None:
    """Exit code 2, one line on stderr containing each fragment, no traceback."""
    assert result.exit_code == 2, result.output
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1, message
    assert message.startswith("error:"), message
    assert "Traceback" not in result.output
    for f in fragments:
        assert f in message, message
