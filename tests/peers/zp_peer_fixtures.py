"""Fixtures the peers' HTTP tests take besides the server: hf_runner runs the
reference model in transformers, which is not here: those tests skip,
saying so."""
import pytest


@pytest.fixture(scope="session")
def hf_runner():
    def runner(name, *args, **kwargs):
        pytest.skip(f"reference model {name} (transformers) is not here")
    return runner
