"""Scene descriptions: YAML templates with random ranges, resolved into concrete scenes.

A *template* is a YAML mapping in which any value may be a random spec::

    {uniform: [lo, hi]}    a float drawn uniformly
    {randint: [lo, hi]}    an integer in [lo, hi]
    {choice: [a, b, ...]}  one of the options
    {grid: [a, b, ...]}    datasets cycle through the product of all grids (scene i gets combo i)

A *scene* is a template with every random choice made; it is written to ``scene.yaml`` and
re-simulates bit for bit (its own ``seed`` drives the noise).
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import yaml

from sslkit.errors import ConfigError, GeometryError, ResourceError, describe
from sslkit.files import read_yaml
from sslkit.geometry import SPEED_OF_SOUND, SPEED_OF_SOUND_RANGE, check_geometry
from sslkit.sims.signals import audio_folder, draw_signal

TOP_KEYS = {"name", "description", "fs", "duration", "c", "seed", "room", "mics", "sources", "noise", "truth_hop", "block"}
ROOM_KEYS = {"dimensions", "rt60", "absorption", "materials", "max_order", "ray_tracing", "air_absorption"}
MIC_KEYS = {"positions", "file", "random", "near_source", "ids"}
SOURCE_KEYS = {"signal", "position", "trajectory", "start", "length", "gain_db", "label"}
NOISE_KEYS = {"snr_db", "kind"}
RANDOM_KEYS = {"uniform", "randint", "choice", "grid"}
NOISE_KINDS = ("white", "diffuse", "babble")
MAX_FS = 384_000
"""Highest sample rate (Hz) a scene may ask for."""
MAX_ROOM_M = 1000.0
"""Largest room side (m) a scene may ask for."""
MAX_RT60_S = 20.0
"""Longest reverberation time (s) a scene may ask for."""
MAX_BLOCK_STEP_M = 0.25
"""Farthest (m) a moving source may travel between two simulated blocks (each block is one static
image-source response; farther steps would smear its track)."""


@dataclass
class RoomSpec:
    """Shoebox room: dimensions (m) and either rt60 (s, inverse Sabine), absorption or materials."""

    dimensions: list[float]
    rt60: float | None = None
    absorption: float | None = None
    materials: dict | None = None
    max_order: int | None = None
    ray_tracing: bool = False
    air_absorption: bool = False


@dataclass
class SourceSpec:
    """One source: a resolved signal reference and a static position or a trajectory.

    ``waypoints`` has shape (n_waypoints, 3); with one waypoint the source is static, otherwise it
    moves along a smooth curve through them at ``speed`` m/s. ``start``/``length`` (s) bound when
    it is active (``length`` None: until the end).
    """

    signal: str
    waypoints: list[list[float]]
    speed: float = 0.0
    start: float = 0.0
    length: float | None = None
    gain_db: float = 0.0
    label: str | None = None

    @property
    def moving(self) -> bool:
        """Whether the source travels (more than one waypoint, at a speed above zero)."""
        return len(self.waypoints) > 1 and self.speed > 0


@dataclass
class Scene:
    """A fully resolved scene (see module docstring)."""

    fs: int
    duration: float
    room: RoomSpec
    mics: list[list[float]]
    sources: list[SourceSpec]
    mic_ids: list[str] = field(default_factory=list)
    near_source: float | None = None
    snr_db: float | None = None
    noise_kind: str = "white"
    c: float = SPEED_OF_SOUND
    seed: int = 0
    truth_hop: float = 0.1
    block: float = 0.05
    name: str = ""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Scene:
        d = dict(d)
        d["room"] = RoomSpec(**d["room"])
        d["sources"] = [SourceSpec(**s) for s in d["sources"]]
        return cls(**d)


# ---------------------------------------------------------------------------------------------
# Templates
# ---------------------------------------------------------------------------------------------
def preset_dir() -> Path:
    return Path(str(resources.files("sslkit.sims") / "presets"))


def list_presets() -> dict[str, str]:
    """Preset name → one-line description."""
    out = {}
    for p in sorted(preset_dir().glob("*.yaml")):
        out[p.stem] = yaml.safe_load(p.read_text()).get("description", "")
    return out


def load_template(name_or_path: str | Path) -> dict:
    """Load a preset by name or a YAML template/scene file, and check its keys."""
    path = Path(name_or_path)
    if not path.is_file():
        preset = preset_dir() / f"{name_or_path}.yaml"
        if not preset.is_file():
            raise ConfigError(f"{name_or_path}: no such scene file or preset (see --list-presets)")
        path = preset
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of scene keys")
    if "mic_ids" in data:  # a resolved scene.yaml
        return data
    _check_keys(data, TOP_KEYS, "scene", path)
    _check_keys(data.get("room") or {}, ROOM_KEYS, "room", path)
    mics = data.get("mics")
    if isinstance(mics, dict):
        _check_keys(mics, MIC_KEYS, "mics", path)
    if not isinstance(data.get("sources") or [], list):
        raise ConfigError(f"{path}: 'sources' must be a list of sources")
    for i, src in enumerate(data.get("sources") or []):
        _check_keys(src, SOURCE_KEYS, f"sources[{i}]", path)
    _check_keys(data.get("noise") or {}, NOISE_KEYS, "noise", path)
    for key in ("room", "mics", "sources"):
        if key not in data:
            raise ConfigError(f"{path}: missing required key '{key}'")
    return data


@contextlib.contextmanager
def errors_naming(source: object) -> Iterator[None]:
    """Prefix ``source`` (the scene file or preset) to the errors about the scene raised inside, once."""
    try:
        yield
    except (ConfigError, GeometryError, ResourceError) as err:
        if str(err).startswith(f"{source}:"):
            raise
        raise type(err)(f"{source}: {err}") from None


def _check_keys(d: object, allowed: set[str], where: str, path: Path) -> None:
    if not isinstance(d, dict):
        raise ConfigError(f"{path}: '{where}' must be a mapping")
    unknown = sorted(set(d) - allowed)
    if unknown:
        raise ConfigError(f"{path}: unknown key '{unknown[0]}' in {where} (allowed: {', '.join(sorted(allowed))})")


def _is_random(v: object) -> bool:
    return isinstance(v, dict) and len(v) == 1 and next(iter(v)) in RANDOM_KEYS


def grid_size(template: object) -> int:
    """Number of combinations of the template's ``grid`` values (1 without grids)."""
    return int(np.prod([len(g) for g in _grids(template)] or [1]))


def _grids(node: object) -> list[list]:
    if _is_random(node):
        return [node["grid"]] if "grid" in node else []
    if isinstance(node, dict):
        return [g for v in node.values() for g in _grids(v)]
    if isinstance(node, list):
        return [g for v in node for g in _grids(v)]
    return []


class _Drawer:
    """Replaces random specs in a template by values, drawing from ``rng`` and the grid combo."""

    def __init__(self, template: dict, rng: np.random.Generator, index: int):
        self.rng = rng
        combos = list(itertools.product(*_grids(template))) or [()]
        self.combo = iter(combos[index % len(combos)])

    def __call__(self, node: object, where: str = "scene") -> object:
        if _is_random(node):
            (kind, arg), = node.items()
            check_random_spec(kind, arg, where)
            if kind == "grid":
                return next(self.combo)
            if kind == "uniform":
                return float(self.rng.uniform(*arg))
            if kind == "randint":
                return int(self.rng.integers(arg[0], arg[1] + 1))
            return self(arg[int(self.rng.integers(len(arg)))], where)
        if isinstance(node, dict):
            return {k: self(v, f"{where}.{k}") for k, v in node.items()}
        if isinstance(node, list):
            return [self(v, f"{where}[{i}]") for i, v in enumerate(node)]
        return node


def check_random_spec(kind: str, arg: object, where: str) -> None:
    """``uniform``/``randint`` take [lo, hi] with finite lo ≤ hi; ``choice``/``grid`` a non-empty list."""
    if kind in ("uniform", "randint"):
        integer = kind == "randint"
        ok = isinstance(arg, list) and len(arg) == 2 and all(_is_number(v, integer) for v in arg) and arg[0] <= arg[1]
        if not ok:
            raise ConfigError(f"{where}: {{{kind}: [lo, hi]}} needs two finite {'integers' if integer else 'numbers'} with lo ≤ hi, got {arg}")
    elif not (isinstance(arg, list) and arg):
        raise ConfigError(f"{where}: {{{kind}: [...]}} needs a non-empty list, got {arg}")


def _is_number(value: object, integer: bool = False) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return isinstance(value, int) if integer else bool(np.isfinite(value))


def check_number(value: object, where: str, low: float = 0.0, high: float = np.inf, integer: bool = False,
                 include_low: bool = False) -> float:
    """``value`` as a number in (low, high] ([low, high] with ``include_low``), else ConfigError."""
    if _is_number(value, integer) and (low <= value if include_low else low < value) and value <= high:
        return value
    kind = "an integer" if integer else "a number"
    bound = f"[{low:g}, {high:g}]" if include_low else f"({low:g}, {high:g}]"
    raise ConfigError(f"{where} must be {kind} in {bound.replace('inf]', 'inf)')}, got {value!r}")


def check_block_step(speed: float, block: float, where: str) -> None:
    """ConfigError when a source at ``speed`` m/s travels farther than ``MAX_BLOCK_STEP_M`` between
    blocks ``block`` seconds apart."""
    if speed * block > MAX_BLOCK_STEP_M:
        raise ConfigError(f"{where}: at {speed:g} m/s the source travels {speed * block:.2g} m between simulated blocks ({block:g} s apart), "
                          f"more than {MAX_BLOCK_STEP_M:g} m: lower the speed or set block to {MAX_BLOCK_STEP_M / speed:.2g} s or less")


def check_scene(scene: Scene) -> Scene:
    """Every number of a resolved scene within its physical range (ConfigError naming the key)."""
    check_number(scene.fs, "fs", 999, MAX_FS, integer=True)
    check_number(scene.duration, "duration")
    check_number(scene.c, "c", *SPEED_OF_SOUND_RANGE, include_low=True)
    check_number(scene.truth_hop, "truth_hop")
    check_number(scene.block, "block")
    room = scene.room
    if room.rt60 is not None:
        check_number(room.rt60, "room.rt60", high=MAX_RT60_S)
    if room.absorption is not None:
        check_number(room.absorption, "room.absorption", high=1.0)
    for wall, value in (room.materials or {}).items():
        if not isinstance(value, dict):
            check_number(value, f"room.materials.{wall}", high=1.0)
    if scene.snr_db is not None:
        check_number(scene.snr_db, "noise.snr_db", -np.inf)
    if not scene.sources:
        raise ConfigError("sources: a scene needs at least one source")
    check_geometry(np.array(scene.mics, dtype=float), "mics")
    for k, src in enumerate(scene.sources):
        check_block_step(src.speed, scene.block, f"sources[{k}]")
        check_number(src.start, f"sources[{k}].start", include_low=True)
        check_number(src.gain_db, f"sources[{k}].gain_db", -np.inf)
        if src.length is not None:
            check_number(src.length, f"sources[{k}].length")
    if scene.near_source is not None:
        check_number(scene.near_source, "mics.near_source")
    if room.max_order is not None:
        check_number(room.max_order, "room.max_order", integer=True, include_low=True)
    return scene


# ---------------------------------------------------------------------------------------------
# Resolution
# ---------------------------------------------------------------------------------------------
def resolve_scene(template: dict, seed: int = 0, index: int = 0, audio_dir: str | Path | None = None) -> Scene:
    """Make every random choice in ``template`` (reproducibly from ``seed`` and ``index``).

    A template that is already a resolved scene is checked and returned as it is. A value of the
    wrong type anywhere is a ConfigError.
    """
    if audio_dir is not None:
        audio_folder(audio_dir)
    try:
        if "mic_ids" in template:
            return check_scene(Scene.from_dict(template))
        return _resolve_template(template, seed, index, audio_dir)
    except (TypeError, KeyError, AttributeError, ValueError, IndexError) as err:
        raise ConfigError(f"invalid scene ({describe(err)})") from None


def _resolve_template(template: dict, seed: int, index: int, audio_dir: str | Path | None) -> Scene:
    rng = np.random.default_rng([seed, index])
    t = _Drawer(template, rng, index)(template)
    fs = check_number(t.get("fs", 16000), "fs", 999, MAX_FS, integer=True)
    duration = float(check_number(t.get("duration", 5.0), "duration"))
    if not isinstance(t["sources"], list) or not t["sources"]:
        raise ConfigError("sources: a scene needs a list of at least one source")
    room = _resolve_room(t["room"])
    dims = np.array(room.dimensions)
    mics, mic_ids, near = _resolve_mics(t["mics"], dims, rng)
    sources = [_resolve_source(s, dims, duration, rng, audio_dir) for s in t["sources"]]
    noise = t.get("noise") or {}
    kind = noise.get("kind", "white")
    if kind not in NOISE_KINDS:
        raise ConfigError(f"noise.kind '{kind}' is not one of {', '.join(NOISE_KINDS)}")
    snr = noise.get("snr_db")
    if snr is not None:
        check_number(snr, "noise.snr_db", -np.inf)
    return check_scene(Scene(
        fs=fs, duration=duration, room=room, mics=mics, sources=sources, mic_ids=mic_ids, near_source=near,
        snr_db=None if snr is None else float(snr), noise_kind=kind, c=float(t.get("c", SPEED_OF_SOUND)),
        seed=int(rng.integers(0, 2**31)), truth_hop=float(t.get("truth_hop", 0.1)), block=float(t.get("block", 0.05)),
        name=str(t.get("name", "")),
    ))


def _resolve_room(r: dict) -> RoomSpec:
    dims = r.get("dimensions")
    if not (isinstance(dims, list) and len(dims) == 3 and all(_is_number(v) and 0 < v <= MAX_ROOM_M for v in dims)):
        raise ConfigError(f"room.dimensions must be three numbers of metres in (0, {MAX_ROOM_M:g}], got {dims}")
    given = [k for k in ("rt60", "absorption", "materials") if r.get(k) is not None]
    if len(given) > 1:
        raise ConfigError(f"room: give only one of rt60, absorption, materials (got {', '.join(given)})")
    return RoomSpec(**{**r, "dimensions": [float(v) for v in dims]})


def _resolve_mics(m: object, dims: np.ndarray, rng: np.random.Generator) -> tuple[list, list[str], float | None]:
    """Mic positions (n, 3), ids, and the near-source mic distance (None: no near-source channel)."""
    spec = {"positions": m} if isinstance(m, list) else dict(m)
    near = spec.get("near_source")
    if "positions" in spec:
        pos = np.array(spec["positions"], dtype=float)
    elif "file" in spec:
        from sslkit.recording import read_mics

        f = spec["file"]
        path = preset_dir() / "luvira_mics.csv" if f == "luvira" else Path(f)
        pos = read_mics(path)[1]
    elif "random" in spec:
        r = spec["random"]
        pos = random_points(rng, int(r["count"]), dims, float(r.get("min_wall_distance", 0.3)), r.get("height"))
    else:
        raise ConfigError("mics needs one of positions, file, random")
    if pos.ndim != 2 or pos.shape[1] != 3 or len(pos) < 1:
        raise ConfigError(f"mic positions must be a list of [x, y, z], got shape {pos.shape}")
    ids = [str(i) for i in spec.get("ids", range(1, len(pos) + 1))]
    if near:
        ids.append(str(len(pos) + 1))
    return pos.tolist(), ids, (float(near) if near else None)


def random_points(
    rng: np.random.Generator, n: int, dims: np.ndarray, margin: float, height: list | None = None
) -> np.ndarray:
    """n points drawn uniformly in the room shrunk by ``margin``, z optionally within ``height``."""
    lo, hi = np.full(3, margin), dims - margin
    if height is not None:
        lo[2], hi[2] = max(lo[2], height[0]), min(hi[2], height[1])
    if np.any(hi <= lo):
        raise ConfigError(f"room {dims.tolist()} is too small for a wall distance of {margin} m")
    return rng.uniform(lo, hi, size=(n, 3))


def _resolve_source(s: dict, dims: np.ndarray, duration: float, rng: np.random.Generator, audio_dir) -> SourceSpec:
    if "position" in s and "trajectory" in s:
        raise ConfigError("a source takes either position or trajectory, not both")
    speed = 0.0
    if "trajectory" in s:
        traj = s["trajectory"]
        if "random" in traj:
            r = traj["random"]
            speed = float(r.get("speed", 0.5))
            wp = random_points(rng, int(r.get("waypoints", 3)), dims, float(r.get("min_wall_distance", 0.5)), r.get("height"))
        else:
            wp = np.array(traj["waypoints"], dtype=float)
            speed = float(traj.get("speed", 0.5))
        if speed <= 0:
            raise ConfigError(f"trajectory speed must be positive, got {speed}")
    else:
        pos = s.get("position", "random")
        if pos == "random" or isinstance(pos, dict):
            r = pos.get("random", {}) if isinstance(pos, dict) else {}
            wp = random_points(rng, 1, dims, float(r.get("min_wall_distance", 0.5)), r.get("height"))
        else:
            wp = np.array([pos], dtype=float)
    if wp.ndim != 2 or wp.shape[1] != 3:
        raise ConfigError(f"source positions must be [x, y, z], got {wp.tolist()}")
    length = s.get("length")
    return SourceSpec(
        signal=draw_signal(str(s.get("signal", "speech")), rng, audio_dir), waypoints=wp.tolist(), speed=speed,
        start=float(s.get("start", 0.0)), length=None if length is None else float(length),
        gain_db=float(s.get("gain_db", 0.0)), label=s.get("label"),
    )
