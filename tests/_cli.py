"""Shared by the CLI tests: run ``genmodels`` in-process and check a clean failure."""

from typer.testing import CliRunner

from genmodels.cli import app

runner = CliRunner()


def cli_error(args: list[str], *needles: str) -> str:
    """Run ``genmodels ARGS`` expecting a one-line error (exit status 2, no traceback) that contains every needle."""
    res = runner.invoke(app, args)
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output and "error:" in res.output
    for n in needles:
        assert n in res.output, (n, res.output)
    return res.output
