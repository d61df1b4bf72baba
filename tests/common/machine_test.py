import os

from early_exit.common.machine import git_commit, machine_description, machine_info, subprocess_env


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
