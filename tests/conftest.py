"""Test settings: one torch thread (tiny tensors run faster without threading overhead), and
ToolEnv.strict, so that a bug inside a tool raises in tests instead of becoming an `Error:` result
(training keeps strict off: a model must not crash the run with a call)."""

import pytest
import torch

from nanoparl.env import ToolEnv

torch.set_num_threads(1)


@pytest.fixture(autouse=True, scope="session")
def _strict_env():
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ToolEnv, "strict", True)
        yield
