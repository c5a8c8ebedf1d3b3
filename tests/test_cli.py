"""The command line: help for every command, user mistakes as one line without a traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

STAGES = ("corpus", "tokenizer", "mixture", "train", "sft", "evaluate", "release")


def fournil(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fournil", *args], capture_output=True, text=True, cwd=cwd,
                          env={"COLUMNS": "200", "PATH": "/usr/bin:/bin", "TERM": "dumb"})


def test_help_lists_every_command_in_bake_order():
    result = fournil("--help")
    assert result.returncode == 0
    rows = [line.split() for line in result.stdout.splitlines() if line.startswith("│ ")]
    listed = [row[1] for row in rows if len(row) > 2 and not row[1].startswith("-")]
    assert listed == ["run", "plan", "sweep", *STAGES, "generate", "chat", "gguf", "instruct"]


@pytest.mark.parametrize("command", ["run", "sweep", *STAGES])
def test_each_command_has_help(command):
    result = fournil(command, "--help")
    assert result.returncode == 0
    assert "RECIPE" in result.stdout.upper() and "--set" in result.stdout and "--runs-dir" in result.stdout


def test_bad_recipe_is_one_clear_error_without_traceback(tmp_path, minimal_recipe_data):
    minimal_recipe_data["train"] = {"max_steps": 0}
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(minimal_recipe_data))
    result = fournil("run", str(path), "--runs-dir", str(tmp_path / "runs"))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith(f"error: recipe {path}: 1 problem:")
    assert "train.max_steps = 0: Input should be greater than or equal to 1" in result.stderr
    assert not (tmp_path / "runs").exists(), "no work starts on a bad recipe"


def test_bad_override_and_missing_recipe(tmp_path, minimal_recipe_data):
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(minimal_recipe_data))
    result = fournil("corpus", str(path), "--set", "train.max_steps")
    assert result.returncode == 2 and "expected KEY=VALUE" in result.stderr and "Traceback" not in result.stderr
    result = fournil("run", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2 and result.stderr.strip() == f"error: recipe {tmp_path / 'nope.yaml'}: no such file"


def test_stage_before_its_inputs_says_what_to_run(tmp_path, minimal_recipe_data):
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(minimal_recipe_data))
    result = fournil("mixture", str(path), "--runs-dir", str(tmp_path / "runs"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "has no manifest: run `fournil corpus RECIPE` (or `fournil run RECIPE`) first" in result.stderr


def test_unknown_until_stage(tmp_path, minimal_recipe_data):
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(minimal_recipe_data))
    result = fournil("run", str(path), "--until", "bake")
    assert result.returncode == 2 and "--until 'bake': stages are corpus, tokenizer" in result.stderr


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="a CUDA GPU is visible")
def test_asking_for_a_missing_gpu_or_an_unknown_device_is_one_clear_error(tmp_path):
    for device, message in (("cuda", "error: --device = cuda but no CUDA GPU is visible; use auto or cpu"),
                            ("tpu", "error: --device = 'tpu': use auto, cpu or cuda")):
        result = fournil("evaluate", str(tmp_path), "--device", device)
        assert result.returncode == 2 and result.stderr.strip() == message and "Traceback" not in result.stderr


def _all_commands():
    """(path, click command) for every command and tool of the CLI."""
    import click
    import typer

    from fournil.cli import app

    root = typer.main.get_command(app)
    ctx = click.Context(root)
    found = []
    for name in root.list_commands(ctx):
        command = root.get_command(ctx, name)
        found.append(((name,), command))
        if hasattr(command, "list_commands"):  # a group (typer's groups are not click.Group instances here)
            found += [((name, tool), command.get_command(ctx, tool)) for tool in command.list_commands(ctx) if tool != "stage"]
    return found


def test_flags_print_without_a_type_and_every_generate_or_chat_option_has_help():
    from typer.testing import CliRunner

    from fournil.cli import app

    runner = CliRunner()
    for path, command in [((), None), *_all_commands()]:
        result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "200", "TERM": "dumb"})
        assert result.exit_code == 0, path
        assert "<bool>" not in result.output, f"fournil {' '.join(path)} --help shows a flag as <bool>"
        typed = [p.name for p in (command.params if command else ()) if getattr(p, "is_flag", False) and p.metavar != ""]
        assert typed == [], f"fournil {' '.join(path)}: flags {typed} would print as <bool> in a terminal (rich help)"
        if path in (("generate",), ("chat",)):
            undocumented = [p.name for p in command.params if not getattr(p, "help", None) and p.name != "model_dir"]
            assert undocumented == [], f"fournil {path[0]}: no help for {undocumented}"


def test_generate_by_default_does_not_loop_on_a_small_model(baked):
    """Greedy decoding (the old default) repeats a phrase on the mini model; the default now samples as chat does."""
    from fournil.model.generate import Generator, Sampling

    generator = Generator(baked / "release", device="cpu")
    prompt = "Le paquet Debian"

    def longest_repeat(settings) -> int:
        ids = generator.tokenizer.encode("".join(generator.stream(prompt, settings))).ids
        grams = [tuple(ids[i:i + 4]) for i in range(len(ids) - 3)]
        return max(grams.count(g) for g in grams)

    from typer.main import get_command

    from fournil.cli import app

    defaults = {p.name: p.default for p in get_command(app).commands["generate"].params}
    chosen = Sampling(120, defaults["temperature"], defaults["top_k"], defaults["top_p"], defaults["repetition_penalty"], (), 0)
    assert longest_repeat(Sampling(120)) >= 5, "greedy decoding on the mini model is expected to loop"
    assert longest_repeat(chosen) <= 2
