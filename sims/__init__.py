"""Room simulation and datasets: scenes from YAML, pyroomacoustics rooms, moving sources, noise."""
