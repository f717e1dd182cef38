from tests.backbones.tiny import one_thread  # noqa: F401  (autouse for every test here)
