"""Hardware settings shared by train and sample: device choice, CPU threads, and how the nets run.

On CUDA, cuDNN benchmarks the convolution algorithms for each new input shape once and keeps the
fastest (torch.backends.cudnn.benchmark): every training step has the same shapes, so this costs
a few steps and then nothing. It makes GPU runs non-deterministic; CPU runs stay exact.
hardware.compile=true compiles each trainable net with torch.compile (in place, so checkpoints keep
their keys), and under `genlab sample` and `genlab eval` every net of the loaded model; see the
README's performance notes for when it pays.
"""

from __future__ import annotations

import functools
import os
import platform

import torch

# oneDNN instruction-set limits (ONEDNN_MAX_CPU_ISA) under which bf16 still runs on native instructions.
_BF16_ISAS = ("ALL", "AVX512_CORE_BF16", "AVX512_CORE_AMX", "AVX512_CORE_AMX_FP16", "AVX10_1_512_AMX",
              "AVX10_1_512_AMX_FP16", "AVX10_2_512_AMX_2")


def _cpuinfo(field: str) -> str | None:
    """The first `field : value` line of /proc/cpuinfo (Linux), or None."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(field):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_flags() -> set[str]:
    """The CPU's feature flags as Linux lists them; empty elsewhere."""
    return set((_cpuinfo("flags") or "").split())


def cpu_name() -> str:
    """The CPU's model name (/proc/cpuinfo), or platform.processor()."""
    return _cpuinfo("model name") or platform.processor() or "unknown CPU"


@functools.cache
def native_bf16() -> bool:
    """Whether torch's CPU kernels compute bf16 on native instructions here: the CPU has AVX-512 BF16 or
    AMX, and neither ATEN_CPU_CAPABILITY nor ONEDNN_MAX_CPU_ISA holds the kernels below them. Without
    it bf16 is emulated, ~8× slower than float32 (../DESIGN.md's known traps)."""
    try:
        has = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    except AttributeError:  # private helpers of torch: read the flags instead
        has = bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA", "ALL").upper()
    return has and torch.backends.cpu.get_cpu_capability().startswith("AVX512") and isa in _BF16_ISAS


def device_name(hardware: dict) -> str:
    """hardware.device with 'auto' resolved: 'cuda' when a GPU is visible, else 'cpu'."""
    name = hardware["device"]
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return name


def setup_device(hardware: dict) -> torch.device:
    """The torch device named by hardware.device ('auto' = the GPU when there is one). Under
    hardware=ddp it starts the process group first, and on CUDA picks the local rank's GPU."""
    if hardware["threads"]:
        torch.set_num_threads(hardware["threads"])
    name = device_name(hardware)
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"hardware.device={hardware['device']} but no CUDA GPU is visible; use hardware=cpu")
    if name.startswith("cuda"):
        torch.backends.cudnn.benchmark = True
    if hardware["distributed"]:
        from genlab.training.distributed import init

        world = init(torch.device(name).type)
        if name.startswith("cuda"):  # one GPU per process
            name = f"cuda:{world.local_rank}"
    return torch.device(name)


# hardware.layout=auto and hardware.precision=auto: per kind of device, what measured fastest for
# training (benchmarks/time_to_result.py; docs/performance.md). Channels-last keeps float32 arithmetic,
# so a run's figures change only as with another hardware.threads (the order of float sums). bf16
# autocast is picked only where the vae_mnist preset's figure, its IWAE NLL, stayed within 0.1 nats
# of float32's: 86.79 and 86.73 nats in bf16 against 86.71 and 86.67 on CPUs with native bf16
# (docs/performance.md). On other CPUs and on GPUs neither was measured: the default layout and
# float32, as before.
AUTO_LAYOUT = {"cpu, native bf16": "channels_last", "cpu": "contiguous", "cuda": "contiguous"}
AUTO_PRECISION = {"cpu, native bf16": "bf16", "cpu": "fp32", "cuda": "fp32"}


def device_kind(device: torch.device) -> str:
    """The key of AUTO_LAYOUT and AUTO_PRECISION for a device."""
    if device.type == "cpu":
        return "cpu, native bf16" if native_bf16() else "cpu"
    return device.type


def resolve_layout(hardware: dict, device: torch.device) -> str:
    """hardware.layout with 'auto' resolved for this device: 'contiguous' or 'channels_last'."""
    layout = hardware.get("layout", "auto")
    return AUTO_LAYOUT.get(device_kind(device), "contiguous") if layout == "auto" else layout


def trained_precision(state: dict) -> str:
    """The precision a checkpoint's run trained with (checkpoints before hardware.precision=auto
    store only their config's, which was never auto)."""
    return state.get("precision", state["config"]["hardware"]["precision"])


def resolve_precision(hardware: dict, device: torch.device, resumed: dict | None = None) -> str:
    """hardware.precision with 'auto' resolved: for a resumed run (its checkpoint `resumed`) the
    precision it trained with, so that it continues exactly; for a new run this device's pick."""
    precision = hardware["precision"]
    if precision != "auto":
        return precision
    return trained_precision(resumed) if resumed else AUTO_PRECISION.get(device_kind(device), "fp32")


def hardware_note(hardware: dict, layout: str, precision: str, resumed: bool = False) -> str:
    """What the run's first line says about the layout and precision (and, for auto, why)."""
    auto_precision = hardware["precision"] == "auto"
    picked = [f"hardware.{key}=auto" for key, auto in (("layout", hardware.get("layout") == "auto"),
                                                      ("precision", auto_precision and not resumed)) if auto]
    why = []
    if picked:
        device = torch.device(device_name(hardware))
        why.append(f"{' and '.join(picked)} on {cpu_name() if device.type == 'cpu' else device.type}: {device_kind(device)}")
    if auto_precision and resumed:
        why.append("hardware.precision=auto: as the run trained")
    return f"layout {layout}, precision {precision}" + (f" ({'; '.join(why)})" if why else "")


def compile_nets(model) -> None:
    """hardware.compile for sampling and evaluation: torch.compile every net the model holds (its
    weight averages too), in place; each compiles at its first call, so only the nets that decoding
    or a metric calls cost compile time."""
    for net in vars(model).values():
        if isinstance(net, torch.nn.Module):
            net.compile()


def prepare_nets(model, hardware: dict, device: torch.device) -> str:
    """Put the model's trainable nets in the layout hardware.layout resolves to, compile them
    (hardware.compile) and, under hardware=ddp, wrap them in DistributedDataParallel (after
    setup_device started the process group). Returns the layout."""
    layout = resolve_layout(hardware, device)
    if layout == "channels_last":
        for name in model.nets:
            getattr(model, name).to(memory_format=torch.channels_last)
    if hardware["compile"]:
        for name in model.nets:
            getattr(model, name).compile()
    if hardware["distributed"]:
        from genlab.training.distributed import wrap_nets

        wrap_nets(model, device)
    return layout
