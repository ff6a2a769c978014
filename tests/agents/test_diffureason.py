"""DiffuReason's contrast: GRPO end to end moves the PTD thinking tokens and the diffusion refiner; ``frozen`` keeps
them as pre-trained while the rest of the policy still learns."""

from __future__ import annotations

import pytest
import torch
from test_posttrain_train import _config, tiny_env, vaft_checkpoint  # noqa: F401 (fixtures)

MODULES = {"thinking": "thinking.", "refining": "refiner.", "heads": "heads."}


def _moved(before: dict, after: dict, prefix: str) -> bool:
    names = [n for n in before if n.startswith(prefix)]
    assert names, prefix
    return any(not torch.equal(before[n], after[n]) for n in names)


@pytest.mark.parametrize("frozen", [(), ("thinking",), ("thinking", "refining")])
def test_frozen_modules_stay_as_pretrained_and_the_rest_moves(vaft_checkpoint, tiny_env, tmp_path, frozen):  # noqa: F811
    from agents.hhd.model import HHD
    from agents.posttrain.train import train

    before = HHD.from_checkpoint(vaft_checkpoint)[0].state_dict()
    result = train(_config(vaft_checkpoint, tmp_path, method="grpo", iterations=2, lr=1e-3, frozen=frozen),
                   tiny_env, verbose=False)
    after = result.model.state_dict()
    for name, prefix in MODULES.items():
        assert _moved(before, after, prefix) == (name not in frozen), name


def test_frozen_names_are_checked():
    from agents.posttrain.train import PostTrainConfig

    with pytest.raises(ValueError, match="frozen modules must be"):
        PostTrainConfig(frozen=("hsd",))
