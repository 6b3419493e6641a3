"""The README keeps its promises: its test command is CI's, it stays short, every command it
lists exists and has an example in its --help."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
README = (ROOT / "README.md").read_text()


def test_ci_runs_exactly_the_readme_test_command():
    command = re.search(r"```bash\n(pip install [^\n]*pytest)\n```", README).group(1)
    assert command in (ROOT / ".ci" / "run").read_text().splitlines()


def test_readme_is_for_users():
    assert len(README.splitlines()) <= 150
    assert "## References" in README and (ROOT / "LICENSE").is_file()


def registered_commands() -> list[str]:
    from sslkit.cli import app

    return sorted(info.name or info.callback.__name__ for info in app.registered_commands)


@pytest.mark.parametrize("command", registered_commands())
def test_every_command_is_in_the_readme_table_with_an_example_in_its_help(cli, command):
    table = [line for line in README.splitlines() if line.startswith("| `sslkit")]
    assert any(f"`{command}`" in line or f"`sslkit {command}`" in line for line in table), command
    result = cli(command, "--help")
    assert result.exit_code == 0 and "Example" in result.output, result.output


def test_the_python_quick_start_runs(monkeypatch):
    monkeypatch.chdir(ROOT)
    code = re.search(r"```python\n(.*?)```", README, re.S).group(1)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["track"].xyz.shape[1] == 3 and namespace["result"].tdoa.ndim == 3
