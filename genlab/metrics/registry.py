"""Every `genlab eval` metric, each one entry: what it needs, how it runs, how it reports.

A metric needs things of the checkpoint's model (genlab/models/base.py, `capabilities`:
"encoder", "likelihood", "classes") and of its dataset
(genlab/data/base.py, `Dataset.capabilities`: "factors", "dsprites", "objects"), and reads still
images, clips (a model with `clips`), or both (`reads`); it fits when all of these hold.
`metrics=auto`, the metric list's validation, eval.json's `summary`, the printed table and the
size checks before any work all read this registry, so a metric is added here and nowhere else.

An entry's `run` (genlab/metrics/runs.py) takes the checkpoint's `Evaluation` (genlab/metrics/evaluation.py: the model, the
real splits, generated images, the domain classifier) and returns the metric's eval.json section;
`rows` and `settings` turn that section into the table's rows, `summary` picks its flat scalars.
Heavy imports stay inside the functions: validation reads this module before any work.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from genlab.errors import UserError
from genlab.metrics import runs

# What each need of a dataset means, for the one-line refusals.
DATASET_NEEDS = {"factors": "ground-truth factors",
                 "dsprites": "genlab's procedural dSprites images (every image rendered from its index)",
                 "objects": "clips whose frames show objects a classifier can name (Dataset.objects)"}
IMAGES, CLIPS = frozenset({"images"}), frozenset({"clips"})


@dataclass(frozen=True)
class Metric:
    name: str
    run: Callable[..., dict]                      # Evaluation → the metric's eval.json section
    rows: Callable[[dict], list[tuple]]           # section → table rows (label, value, noise floor or None)
    settings: Callable[[dict], str]               # section → the table's settings column
    summary: tuple[tuple[str, str], ...] = ()     # eval.json summary: (name there, key in the section)
    model_needs: frozenset[str] = frozenset()
    dataset_needs: frozenset[str] = frozenset()
    reads: frozenset[str] = IMAGES                # what the model makes that it reads: "images", "clips"
    auto: bool = True                             # metrics=auto runs it when it fits (False: minutes; asked by name)
    classifier: bool = False                      # reads the domain classifier (its training size is bounded)
    held_bytes_per_value: int = 4                 # per image value held for all n images (0: a fixed number)
    limits: Callable[[dict, str], dict[str, int]] | None = None  # checks its own work bounds; sizes it adds to memory
    generates: bool = True                        # reads images the model generates (its section records their
                                                  # solver steps, genlab/metrics/evaluation.py); False: data only


# -- bounds on the work, checked before any (see genlab.config.checks.require_fits) ---------------------

# nll costs n·k decoder passes. Burda et al. 2016 report k=5000 on MNIST's 10,000 test images
# (5·10⁷ passes); genlab runs at most 200 times that, ~18 days at the 6,558 passes/s of the default
# decoder measured on this project's 2-core CPU.
MAX_DECODER_PASSES = 10**10
# kid averages kid_subsets kernels of subset_size² entries (the default 100 × 1,000² = 10⁸); the
# bound is 10,000× the default: days of CPU.
MAX_KID_KERNEL_ENTRIES = 10**12
INCEPTION_INPUT_VALUES = 3 * 299 * 299


def _nll_limits(settings: dict, prefix: str) -> dict[str, int]:
    from genlab.config.checks import require_fits

    require_fits("metric nll", {"n": settings["n"], "k": settings["k"]}, lambda s: s["n"] * s["k"],
                 (MAX_DECODER_PASSES, f"the {MAX_DECODER_PASSES:.0e} genlab allows (200× Burda et al. 2016's k=5000 "
                                      "on 10,000 images; ~18 days on a 2-core CPU)"), "decoder passes", prefix)
    return {"k": settings["k"]}  # nll holds k float64 log-weights of an image


def _kid_limits(settings: dict, prefix: str) -> dict[str, int]:
    from genlab.config.checks import require_fits

    kernels = {"kid_subsets": settings["kid_subsets"], "kid_subset_size": min(settings["kid_subset_size"], settings["n"])}
    require_fits("metric kid", kernels, lambda s: s["kid_subsets"] * s["kid_subset_size"] ** 2,
                 (MAX_KID_KERNEL_ENTRIES, f"the {MAX_KID_KERNEL_ENTRIES:.0e} genlab allows"), "kernel entries", prefix)
    return {}


def _inception_limits(settings: dict, prefix: str) -> dict[str, int]:
    return {"inception.batch_size": settings["inception"]["batch_size"]}


def extra_bytes(sizes: dict[str, int]) -> int:
    """Memory, beyond the images and one batch, of the sizes the metrics' `limits` added."""
    return 8 * sizes.get("k", 0) + 4 * INCEPTION_INPUT_VALUES * sizes.get("inception.batch_size", 0)


# -- the table -----------------------------------------------------------------------------------

def _classifier_settings(m: dict) -> str:
    return f"n={m['n']}; floor: n train vs test; classifier {100 * m['classifier']['test_accuracy']:.2f}% test acc."


def _generation_cost(m: dict) -> str:
    """What the generated images cost, beside a FID: for a diffusion model quality is bought with steps.
    (eval.json files written before this was recorded lack it.)"""
    if "nfe" not in m:
        return "generation cost not recorded"
    steps = f" at sample_steps {m['sample_steps']}" if "sample_steps" in m else ""
    return (f"NFE {m['nfe']} (network evaluations per image{steps}), {m['ms_per_image']:.3g} ms/image "
            f"on {m['generation_device']}")


def _nll_rows(m: dict) -> list[tuple]:
    if "frames" in m:  # clips
        return [("neg. ELBO (nats/frame)", m["neg_elbo_nats_per_frame"], None),
                ("IWAE NLL bound (nats/frame)", m["iwae_nll_nats_per_frame"], None)]
    return [("neg. ELBO (nats/image)", m["neg_elbo_nats"], None), ("IWAE NLL bound (nats/image)", m["iwae_nll_nats"], None)]


def _objects_settings(m: dict) -> str:
    return (f"n={m['n']} clips vs n test clips; the {m['classifier']['dataset']} classifier, "
            f"{100 * m['classifier']['test_accuracy']:.2f}% test acc.")


def _shapes_rows(m: dict) -> list[tuple]:
    return [(f"{name} {'row draws it' if 'own_shape' in m else 'share'}", value, None)
            for name, value in m.get("own_shape", m.get("share", {})).items()]


METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("nll", runs.measure_nll,
           rows=_nll_rows,
           settings=lambda m: f"k={m['k']}, n={m['n']}, binarization: {m['binarization']}" + (" (grey levels!)" if "note" in m else ""),
           summary=(("neg_elbo_nats", "neg_elbo_nats"), ("iwae_nll_nats", "iwae_nll_nats"),
                    ("neg_elbo_nats_per_frame", "neg_elbo_nats_per_frame"),
                    ("iwae_nll_nats_per_frame", "iwae_nll_nats_per_frame")),
           model_needs=frozenset({"likelihood"}), reads=IMAGES | CLIPS, limits=_nll_limits, generates=False),
    Metric("fid", runs.measure_fid,
           rows=lambda m: [("FID (classifier features)", m["fid"], m["noise_floor"])],
           settings=lambda m: f"{_classifier_settings(m)}; {_generation_cost(m)}",
           summary=(("fid", "fid"), ("fid_noise_floor", "noise_floor")), classifier=True),
    Metric("kid", runs.measure_kid,
           rows=lambda m: [("KID (classifier features)", f"{m['kid']:.4g} ± {m['kid_std']:.2g}", m["noise_floor"])],
           settings=lambda m: f"{m['subsets']} subsets of {m['subset_size']}",
           summary=(("kid", "kid"), ("kid_noise_floor", "noise_floor")), classifier=True, limits=_kid_limits),
    Metric("pr", runs.measure_pr,
           rows=lambda m: [("precision", m["precision"], m["noise_floor_precision"]),
                           ("recall", m["recall"], m["noise_floor_recall"])],
           settings=lambda m: f"k={m['k']}, n={m['n']}",
           summary=(("precision", "precision"), ("recall", "recall"), ("precision_noise_floor", "noise_floor_precision"),
                    ("recall_noise_floor", "noise_floor_recall")), classifier=True),
    Metric("accuracy", runs.measure_accuracy,
           rows=lambda m: [("class accuracy", m["accuracy"], None)],
           settings=lambda m: f"{m['per_class_n']} per class: " + " ".join(f"{a:.2f}" for a in m["per_class"]),
           summary=(("accuracy", "accuracy"),), model_needs=frozenset({"classes"}), classifier=True),
    Metric("mig", runs.measure_mig,
           rows=lambda m: [("MIG", m["mig"], None)],
           settings=lambda m: f"{m['points']} points, {m['bins']} bins",
           summary=(("mig", "mig"),), model_needs=frozenset({"encoder"}), dataset_needs=frozenset({"factors"}),
           held_bytes_per_value=0, generates=False),  # reads MIG_POINTS images whatever n is
    Metric("shapes", runs.measure_shapes,
           rows=_shapes_rows,
           settings=lambda m: f"n={m['n']}, nearest of 737,280 real images; mean dist² {m['mean_dist_sq']:.2f}",
           summary=(("shapes_min_own", "min_own_shape"), ("shapes_min_share", "min_share")),
           dataset_needs=frozenset({"dsprites"}), auto=False),
    Metric("inception_fid", runs.measure_inception_fid,
           rows=lambda m: [("Inception FID", m["inception_fid"], m.get("noise_floor"))],
           settings=lambda m: f"n={m['n']} vs n test; floor: even vs odd test images, n/2 each; {m['weights']}; "
                              f"{_generation_cost(m)}",
           summary=(("inception_fid", "inception_fid"), ("inception_fid_noise_floor", "noise_floor")),
           auto=False, held_bytes_per_value=1, limits=_inception_limits),  # uint8 images
    Metric("frame_fid", runs.measure_clips("frame_fid"),
           rows=lambda m: [("frame FID (classifier features)", m["frame_fid"], m["noise_floor"])],
           settings=lambda m: f"{_objects_settings(m)}; {m['frames']} frames each; floor: n train clips; "
                              f"{_generation_cost(m)} (per clip)",
           summary=(("frame_fid", "frame_fid"), ("frame_fid_noise_floor", "noise_floor")),
           dataset_needs=frozenset({"objects"}), reads=CLIPS, classifier=True),
    Metric("identity", runs.measure_clips("identity"),
           rows=lambda m: [("identity persistence (test clips: floor column)", m["persistence"], m["persistence_test"]),
                           ("  frame-shuffled test clips", m["persistence_shuffled"], None),
                           ("identity κ (Fleiss; test clips: floor column)", m["kappa"], m["kappa_test"]),
                           ("  frame-shuffled test clips", m["kappa_shuffled"], None)],
           settings=lambda m: f"{_objects_settings(m)}; frames read: {100 * m['read_share']:.0f}% "
                              f"({100 * m['read_share_test']:.0f}% of test clips')",
           summary=(("identity_persistence", "persistence"), ("identity_persistence_test", "persistence_test"),
                    ("identity_persistence_shuffled", "persistence_shuffled"), ("identity_kappa", "kappa"),
                    ("identity_kappa_test", "kappa_test"), ("identity_kappa_shuffled", "kappa_shuffled")),
           dataset_needs=frozenset({"objects"}), reads=CLIPS, classifier=True),
    Metric("motion", runs.measure_clips("motion"),
           rows=lambda m: [("mean speed (px/frame; test clips: floor column)", m["mean_speed_px"], m["mean_speed_px_test"]),
                           ("speed W1 to test clips (px/frame)", m["speed_w1_px"], m["noise_floor"]),
                           ("bounce share", m["bounce_share"], m["bounce_share_test"])],
           settings=lambda m: f"n={m['n']} clips; {m['contacts']} wall contacts ({m['contacts_test']} in test clips); "
                              "W1 floor: n train clips",
           summary=(("mean_speed_px", "mean_speed_px"), ("speed_w1_px", "speed_w1_px"), ("bounce_share", "bounce_share"),
                    ("bounce_share_test", "bounce_share_test")),
           dataset_needs=frozenset({"objects"}), reads=CLIPS),
)}
NAMES = tuple(METRICS)


# -- what fits -----------------------------------------------------------------------------------

def _fits_model(metric: Metric, model) -> bool:
    from genlab.models.base import capabilities

    makes = "clips" if getattr(model, "clips", False) else "images"
    return metric.model_needs <= capabilities(model) and makes in metric.reads


def _fits_dataset(metric: Metric, dataset: type) -> bool:
    return metric.dataset_needs <= dataset.capabilities()


def applicable(model, dataset: type) -> list[str]:
    """The metrics `metrics=auto` runs for a model (built, or its family's class before one exists)
    on a dataset class (genlab/data/base.py): every one that fits them and is not asked for by name only."""
    return [m.name for m in METRICS.values() if m.auto and _fits_model(m, model) and _fits_dataset(m, dataset)]


def check_fits(names: list[str], model, dataset: type, dataset_name: str) -> None:
    """UserError for the first metric of `names` that the model or the dataset cannot give."""
    kind = model.__name__ if isinstance(model, type) else model.kind
    for name in names:
        metric = METRICS[name]
        if not _fits_model(metric, model):
            fitting = [m.name for m in METRICS.values() if m.auto and _fits_model(m, model)]
            raise UserError(f"metric {name} does not fit the checkpoint's {kind} (it fits "
                            f"{', '.join(fitting)}): drop it from metrics= "
                            f"(metrics=auto picks what fits: {', '.join(applicable(model, dataset))})")
        missing = sorted(metric.dataset_needs - dataset.capabilities())
        if missing:
            raise UserError(f"metric {name} needs {' and '.join(DATASET_NEEDS[need] for need in missing)}, "
                            f"which dataset {dataset_name} does not have: drop it from metrics=")


def summary(metrics: dict[str, dict]) -> dict[str, float]:
    """eval.json's flat `summary` of the metrics' sections (in registry order); `<metric>_sample_steps`
    beside the figures of a model decoded by an iterative solve, which hold at those steps only."""
    flat = {}
    for metric in METRICS.values():
        section = metrics.get(metric.name, {})
        flat.update({name: section[key] for name, key in (*metric.summary, (f"{metric.name}_sample_steps", "sample_steps"))
                     if key in section})
    return flat


def held_bytes_per_value(names: list[str]) -> int:
    return max(METRICS[name].held_bytes_per_value for name in names)


def uses_classifier(names: list[str]) -> bool:
    return any(METRICS[name].classifier for name in names)


def work_limits(names: list[str], settings: dict, prefix: str) -> dict[str, int]:
    """Check each metric's own work bounds; the sizes they add to the memory bound."""
    sizes = {}
    for name in names:
        if METRICS[name].limits is not None:
            sizes.update(METRICS[name].limits(settings, prefix))
    return sizes

