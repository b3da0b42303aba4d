from pathlib import Path

from typer.testing import CliRunner

from flows.cli import app
from tasks.core.pipeline import stage

runner = CliRunner()


def test_help_lists_the_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "plan" in result.output and "run" in result.output


def test_dry_run_prints_the_plan_and_runs_nothing(tiny_project: Path):
    result = runner.invoke(app, ["run", "--dry-run", "tiny-cnn", "--root", str(tiny_project)], terminal_width=120)
    assert result.exit_code == 0, result.output
    assert "zoo" in result.output and "will run" in result.output and "after upstream" in result.output
    assert not (tiny_project / "data").exists()
    stage("zoo").run("tiny-cnn", str(tiny_project))
    after = runner.invoke(app, ["plan", "tiny-cnn", "--root", str(tiny_project)], terminal_width=120)
    assert after.exit_code == 0
    zoo_line = next(line for line in after.output.splitlines() if " zoo " in line)
    assert "up to date" in zoo_line


def test_unknown_model_is_named(tiny_project: Path):
    result = runner.invoke(app, ["plan", "resnet", "--root", str(tiny_project)])
    assert result.exit_code != 0
    assert "unknown model 'resnet'" in str(result.exception)
