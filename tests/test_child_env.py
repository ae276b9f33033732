"""The environment children of the worker get: secrets removed, everything else kept."""

from worker.child_env import child_env, is_secret_name


def test_secrets_are_removed_and_the_rest_is_kept() -> None:
    base = {
        "PATH": "/usr/bin",
        "PENDRA_WORKER_KEY": "pdk_secret",
        "GPU_WORKER_PRIVATE_KEY": "c2VjcmV0",
        "HF_TOKEN": "hf_secret",
        "GITHUB_TOKEN": "ghp_secret",
        "AWS_SECRET_ACCESS_KEY": "aws",
        "PENDRA_WORKER_KEY_FILE": "/home/u/.pendra/worker.key",
        "CUDA_VISIBLE_DEVICES": "0",
    }
    env = child_env(base=base)
    assert env == {
        "PATH": "/usr/bin",
        "PENDRA_WORKER_KEY_FILE": "/home/u/.pendra/worker.key",
        "CUDA_VISIBLE_DEVICES": "0",
    }


def test_extra_is_applied_after_scrubbing() -> None:
    env = child_env({"HF_TOKEN": "given-on-purpose"}, base={"HF_TOKEN": "x", "HOME": "/h"})
    assert env == {"HOME": "/h", "HF_TOKEN": "given-on-purpose"}


def test_names_are_compared_case_insensitively() -> None:
    assert is_secret_name("hf_token")
    assert is_secret_name("pendra_worker_key")
    assert not is_secret_name("PENDRA_HOME")
