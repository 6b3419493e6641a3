"""Allow ``python -m sslkit``."""

from sslkit.cli import app

app(prog_name="sslkit")
