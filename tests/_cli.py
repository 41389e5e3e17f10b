"""Shared by the CLI tests: run ``genmodels`` in-process, check a success (and read its last JSON line) or a clean
failure."""

import json

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


def ok(result):
    """``result`` of ``runner.invoke``, after checking the command succeeded (its output shown if not)."""
    assert result.exit_code == 0, result.output
    return result


def last_json(result) -> dict:
    """The JSON object on the last line of a command's standard output (where the commands print their summary)."""
    return json.loads(result.stdout.strip().splitlines()[-1])
