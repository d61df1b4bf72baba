import os
import shlex
import sys

from early_exit.common.machine import (
    git_commit,
    machine_description,
    machine_info,
    run_command,
    subprocess_env,
)


def test_subprocess_env_is_offline_and_sets_threads_only_when_given(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    env = subprocess_env(1)
    assert env["HF_HUB_OFFLINE"] == env["TRANSFORMERS_OFFLINE"] == "1"
    assert env["OMP_NUM_THREADS"] == env["MKL_NUM_THREADS"] == "1"
    assert "OMP_NUM_THREADS" not in subprocess_env()
    assert env["PATH"] == os.environ["PATH"]


def test_machine_description_agrees_with_machine_info():
    info = machine_info()
    line = machine_description()
    assert line.startswith(f"{info['cpu']}, {info['cores']} cores, torch {info['torch']}")
    assert f"({info['torch_threads']} threads)" in line


def test_git_commit_outside_a_checkout_is_unknown(tmp_path):
    assert git_commit(tmp_path) == "unknown"


def test_run_command_prints_the_given_arguments_quoted_so_the_line_runs_as_printed(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["/abs/path/bench/x.py", "--from-the-command-line"])
    arguments = ["--data", "my data/dev.tsv", "--sizes", "1,32"]
    command = run_command(".venv/bin/python bench/x.py", arguments)
    assert command == ".venv/bin/python bench/x.py --data 'my data/dev.tsv' --sizes 1,32"
    assert shlex.split(command)[2:] == arguments


def test_run_command_without_arguments_takes_the_command_line_but_not_the_script_path(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["/abs/path/bench/x.py", "--repeats", "3"])
    assert run_command(".venv/bin/python bench/x.py") == ".venv/bin/python bench/x.py --repeats 3"
    assert run_command(".venv/bin/python bench/x.py", []) == ".venv/bin/python bench/x.py"
