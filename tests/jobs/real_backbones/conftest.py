import pytest

from tests.backbones.tiny import one_thread  # noqa: F401  (autouse for every test here)
from tests.jobs.real_backbones.helpers import ModelFolders


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """Nothing here may reach the hub: a hub id must fail at once, not wait on the network. (The hub
    library reads HF_HUB_OFFLINE when it is imported, so its constant is set too.)"""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


@pytest.fixture(scope="session")
def models(tmp_path_factory) -> ModelFolders:
    return ModelFolders(tmp_path_factory.mktemp("models"))
