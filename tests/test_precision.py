"""Mixed precision: fp16 loss scaling (genlab.models.optim) rescues gradients that underflow, its
skipped steps are not mistaken for divergence, and an fp16 run resumes exactly. On the CPU, whose
autocast runs fp16 like a GPU's (slowly)."""

from __future__ import annotations

import pytest
import torch
from test_resume import assert_same, compose, logged, training_state

from genlab.config.validate import ConfigError, validate_train
from genlab.models import optim
from genlab.commands.train import train
from genlab.training.checkpoint import load_checkpoint


def test_loss_scaling_keeps_a_small_gradient_from_underflowing():
    # dL/dw = x · 1e-4 = 1e-8: below fp16's smallest subnormal (6e-8), so it rounds to 0 unless the
    # loss is scaled (by 2^16 here: 6.6e-4 in fp16) and the gradient divided back in fp32.
    layer = torch.nn.Linear(4, 1, bias=False)
    x = torch.full((1, 4), 1e-4)

    def gradient(scaled: bool) -> torch.Tensor:
        opt = optim.make_optimizer(layer.parameters(), {"name": "sgd", "lr": 1.0, "momentum": 0.0, "weight_decay": 0.0})
        opt.zero_grad()
        with torch.autocast("cpu", dtype=torch.float16):
            loss = layer(x).float().sum() * 1e-4
            if scaled:
                optim.backward(loss, opt)
                optim.unscale(opt)
            else:
                loss.backward()
        return layer.weight.grad

    assert torch.equal(gradient(scaled=False), torch.zeros(1, 4))
    torch.testing.assert_close(gradient(scaled=True), torch.full((1, 4), 1e-8), rtol=1e-3, atol=0)


def test_fp16_resumes_exactly_and_its_skipped_steps_are_not_divergence(tmp_path):
    # The scale starts at 2^16 and halves at each overflowing step: the first steps are skipped.
    # Under on_nonfinite=stop that must not stop the run, and their scalars are left out.
    straight, split = tmp_path / "straight", tmp_path / "split"
    fp16 = ["hardware.precision=fp16", "trainer.log_every=6", "trainer.ckpt_every=6", "trainer.sample_every=12"]
    train(compose(*fp16, "trainer.max_steps=12"), straight)
    train(compose(*fp16, "trainer.max_steps=5"), split)
    train(compose(*fp16, "trainer.max_steps=12", f"resume={split}"), split)
    state = load_checkpoint(straight / "checkpoints" / "last.pt")
    assert_same(training_state(straight / "checkpoints" / "last.pt") | {"scalers": state["scalers"]},
                training_state(split / "checkpoints" / "last.pt") | {"scalers": load_checkpoint(split)["scalers"]})
    assert state["scalers"]["vae"]["scale"] < 2**16
    log = logged(straight)
    skipped = dict(log["train/loss_scale_skipped_steps"])
    assert skipped[6] > 0 and skipped[6] + skipped[12] < 12
    assert [p for p in logged(split)["train/loss_nats"] if p[0] != 5] == log["train/loss_nats"]
    assert log["train/loss_nats"] and all(torch.isfinite(torch.tensor(v)) for _, v in log["train/loss_nats"])


def test_fp16_gan_with_r1_is_refused():
    with pytest.raises(ConfigError, match="R1's double backward through BatchNorm overflows fp16"):
        validate_train(compose("model=gan", "hardware.precision=fp16"))
    validate_train(compose("model=gan", "hardware.precision=fp16", "model.r1_gamma=0"))
