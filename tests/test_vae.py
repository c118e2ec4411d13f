"""The β-VAE's maths and one training step."""

import math

import torch

from genlab.data.batches import Batch
from genlab.models import build_model
from genlab.models.vae import gaussian_kl

MODEL = {"_target_": "genlab.models.vae.VAE", "name": "vae", "beta": 4.0, "latent_dim": 3, "likelihood": "bernoulli", "gaussian_std": 0.1, "width": 8, "ema_decay": 0.0}
ADAM = {"name": "adam", "lr": 1e-3, "betas": [0.9, 0.999], "weight_decay": 0.0}


def test_closed_form_kl_matches_monte_carlo():
    torch.manual_seed(0)
    mu, logvar = torch.tensor([[0.5, -1.0, 2.0]]), torch.tensor([[0.3, -0.7, 1.1]])
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    p = torch.distributions.Normal(torch.zeros(3), torch.ones(3))
    z = q.sample((400_000,))
    monte_carlo = (q.log_prob(z) - p.log_prob(z)).sum(-1).mean()
    assert abs(gaussian_kl(mu, logvar).item() - monte_carlo.item()) < 0.02
    assert gaussian_kl(torch.zeros(1, 3), torch.zeros(1, 3)).item() == 0


def test_gaussian_likelihood_is_a_log_density_in_nats():
    vae = build_model({**MODEL, "likelihood": "gaussian"}, ADAM, (1, 8, 8), 3, torch.device("cpu"))
    x = torch.rand(2, 1, 8, 8)
    logits = torch.randn(2, 1, 8, 8)
    expected = -torch.distributions.Normal(torch.sigmoid(logits), 0.1).log_prob(x).flatten(1).sum(1)
    assert torch.allclose(vae.recon_nats(logits, x), expected, atol=1e-3)


def test_train_step_reports_nats_per_image_and_changes_weights():
    torch.manual_seed(0)
    vae = build_model(MODEL, ADAM, (1, 16, 16), 3, torch.device("cpu"))
    before = [p.clone() for p in vae.decoder.parameters()]
    x = (torch.rand(8, 1, 16, 16) > 0.5).float()
    metrics = vae.train_step(Batch(x, torch.zeros(8, dtype=torch.long)))
    assert set(metrics) == {"recon_nats", "kl_nats", "beta_kl_nats", "loss_nats", "neg_elbo_nats"}
    assert torch.isclose(metrics["loss_nats"], metrics["recon_nats"] + metrics["beta_kl_nats"])
    assert torch.isclose(metrics["neg_elbo_nats"], metrics["recon_nats"] + metrics["kl_nats"])
    assert torch.isclose(metrics["beta_kl_nats"], 4 * metrics["kl_nats"])
    # An untrained decoder predicts ~0.5 per pixel: ~log 2 nats per pixel.
    assert abs(metrics["recon_nats"].item() / 256 - math.log(2)) < 0.1
    assert any(not torch.equal(a, b) for a, b in zip(before, vae.decoder.parameters()))


def _batches(count: int, seed: int) -> list[Batch]:
    generator = torch.Generator().manual_seed(seed)
    return [Batch((torch.rand(8, 1, 16, 16, generator=generator) > 0.5).float(), torch.zeros(8, dtype=torch.long))
            for _ in range(count)]


def test_weight_average_follows_its_formula_and_is_what_sampling_and_eval_use():
    torch.manual_seed(0)
    vae = build_model({**MODEL, "ema_decay": 0.5}, ADAM, (1, 16, 16), 3, torch.device("cpu"))
    nets = {"encoder": vae.encoder, "decoder": vae.decoder}
    expected = {name: {k: v.clone() for k, v in net.state_dict().items()} for name, net in nets.items()}
    for t, batch in enumerate(_batches(4, 1)):
        vae.train_step(batch)
        keep = min(0.5, (1 + t) / (10 + t))  # β_t: 0.1, 0.1818…, 0.25, 0.3077…
        for name, net in nets.items():
            for key, raw in net.state_dict().items():
                expected[name][key] = keep * expected[name][key] + (1 - keep) * raw if raw.is_floating_point() else raw
    for name in nets:
        torch.testing.assert_close(getattr(vae, f"{name}_ema").state_dict(), expected[name])
    assert vae.ema_updates == 4

    z = torch.randn(5, 3, generator=torch.Generator().manual_seed(2))
    x = _batches(1, 3)[0].images
    vae.train(False)
    with torch.no_grad():
        torch.testing.assert_close(vae.decode(z), torch.sigmoid(vae.decoder_ema(z)))
        assert not torch.allclose(vae.decode(z), torch.sigmoid(vae.decoder(z)), atol=1e-5)
        torch.testing.assert_close(vae.posterior(x)[0], vae.encoder_ema(x).chunk(2, 1)[0])
        torch.testing.assert_close(vae.logits(z), vae.decoder_ema(z))


def test_without_averaging_the_average_is_the_trained_weights_and_training_is_unchanged():
    runs = []
    for decay in (0.0, 0.9):
        torch.manual_seed(0)
        vae = build_model({**MODEL, "ema_decay": decay}, ADAM, (1, 16, 16), 3, torch.device("cpu"))
        for batch in _batches(3, 1):
            torch.manual_seed(5)
            vae.train_step(batch)
        runs.append(vae)
    plain, averaged = runs
    for name in ("encoder", "decoder"):
        assert all(torch.equal(a, b) for a, b in zip(getattr(plain, name).state_dict().values(),
                                                     getattr(averaged, name).state_dict().values()))
        assert all(torch.equal(a, b) for a, b in zip(getattr(plain, name).state_dict().values(),
                                                     getattr(plain, f"{name}_ema").state_dict().values()))


def test_the_memory_check_counts_a_weight_average_once_and_no_average_not_at_all():
    from genlab.models import size_estimate

    sizes = {decay: size_estimate({**MODEL, "ema_decay": decay}, ADAM, (1, 16, 16), 3, 4) for decay in (0.0, 0.9)}
    (plain, no_copies, _), (params, copies, _) = sizes[0.0], sizes[0.9]
    assert no_copies == 0 and copies == params == plain > 0
