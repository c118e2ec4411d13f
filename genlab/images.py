"""Image grids and image files, without torchvision.

`grid` lays images out as torchvision.utils.make_grid does with padding=2 (the layout every grid
genlab writes has used): per_row images per row, a 2 px border of `pad_value` around and between
them, grayscale repeated to RGB. `to_uint8` rounds [0, 1] to {0…255} as torchvision's save_image
does, ⌊255·v + 0.5⌋ clamped. Importing torchvision.utils pulls in torchvision.models and
torch._dynamo (seconds of start-up for `genlab sample` and every training process); these few
lines do the same with torch and PIL.

`write_npz` streams uint8 images into a NumPy .npz archive (one array, `images`, N×H×W×C, the
layout of image libraries and of the sample archives FID tools read), chunk by chunk, so writing
n images never holds more than one chunk beyond the archive itself; the zip entries carry a fixed
timestamp, so the same images give the same bytes.

Clips (N, T, C, H, W; a model with `clips`, genlab/models/base.py) are written as an animated GIF
(`clip_grids`: frame t shows frame t of every clip in one grid; GIF_FRAME_MS per frame, looping)
and a film strip (`film_strip`: one clip per row). Pillow writes the GIF; torchvision brings it.
"""

from __future__ import annotations

import math
import zipfile
from collections.abc import Iterable
from pathlib import Path

import torch

from genlab.files import write_atomically

PADDING = 2  # px around and between the images of a grid
GIF_FRAME_MS = 100  # per frame of an animated GIF: 10 frames per second
FIXED_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest a zip entry can carry: archives do not depend on the clock


def grid(images: torch.Tensor, per_row: int, pad_value: float = 0.5) -> torch.Tensor:
    """Images (N, C, H, W) in [0, 1] → one image (3 or C, rows·(H + 2) + 2, cols·(W + 2) + 2)."""
    images = images.float().cpu()
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    n, channels, height, width = images.shape
    cols = min(per_row, n)
    rows = math.ceil(n / cols)
    out = images.new_full((channels, rows * (height + PADDING) + PADDING, cols * (width + PADDING) + PADDING), pad_value)
    for k in range(n):
        top, left = (k // cols) * (height + PADDING) + PADDING, (k % cols) * (width + PADDING) + PADDING
        out[:, top : top + height, left : left + width] = images[k]
    return out


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """[0, 1] → uint8 {0…255}, rounding to the nearest level (torchvision's save_image rounding)."""
    return images.mul(255).add_(0.5).clamp_(0, 255).to(torch.uint8)


def png_bytes(image: torch.Tensor) -> bytes:
    """One image (C, H, W) in [0, 1], C = 1 or 3, as the bytes of an 8-bit PNG."""
    import io

    from PIL import Image

    pixels = to_uint8(image.cpu()).permute(1, 2, 0).numpy()
    buffer = io.BytesIO()
    Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def write_png(image: torch.Tensor, path: Path) -> None:
    """One image (C, H, W) in [0, 1], C = 1 or 3, as an 8-bit PNG, written atomically."""
    data = png_bytes(image)
    write_atomically(path, lambda f: f.write(data))


def gif_bytes(frames: Iterable[torch.Tensor], frame_ms: int = GIF_FRAME_MS) -> bytes:
    """Images (C, H, W) in [0, 1], C = 1 or 3, as the frames of an animated GIF that loops forever.

    Frames whose three channels are equal (genlab's grayscale grids) are stored in 8-bit grey, so
    every level survives GIF's 256-colour palette exactly; colour frames are quantized by Pillow.
    The same frames give the same bytes."""
    import io

    from PIL import Image

    pictures = []
    for frame in frames:
        pixels = to_uint8(frame.cpu()).permute(1, 2, 0).numpy()
        grey = pixels.shape[2] == 1 or bool((pixels == pixels[:, :, :1]).all())
        pictures.append(Image.fromarray(pixels[:, :, 0]) if grey else Image.fromarray(pixels).quantize())
    buffer = io.BytesIO()
    pictures[0].save(buffer, format="GIF", save_all=True, append_images=pictures[1:], duration=frame_ms, loop=0,
                     optimize=False)
    return buffer.getvalue()


def sample_bytes(sample: torch.Tensor) -> tuple[bytes, str]:
    """One sample in [0, 1] as file bytes and their MIME type: an image (C, H, W) as a PNG, a clip
    (T, C, H, W) as a looping GIF of its frames (what `genlab explore` shows)."""
    if sample.dim() == 4:
        return gif_bytes(sample.unbind(0)), "image/gif"
    return png_bytes(sample), "image/png"


def clip_grids(clips: torch.Tensor, per_row: int) -> list[torch.Tensor]:
    """Clips (N, T, C, H, W) in [0, 1] → T grids: grid t shows frame t of every clip, per_row a row."""
    return [grid(clips[:, t], per_row) for t in range(clips.shape[1])]


def film_strip(clips: torch.Tensor) -> torch.Tensor:
    """Clips (N, T, C, H, W) in [0, 1] → one image: one clip per row, its frames left to right."""
    return grid(clips.flatten(0, 1), clips.shape[1])


def write_gif(frames: Iterable[torch.Tensor], path: Path, frame_ms: int = GIF_FRAME_MS) -> None:
    """`gif_bytes(frames)` written atomically to `path`."""
    data = gif_bytes(frames, frame_ms)
    write_atomically(path, lambda f: f.write(data))


def write_npz(chunks: Iterable[torch.Tensor], count: int, image_shape, path: Path) -> None:
    """Write `count` images, arriving as uint8 chunks (n, C, H, W), as `images` (count, H, W, C)
    in the NumPy archive `path`, atomically; clips (n, T, C, H, W) as (count, T, H, W, C). Raises
    ValueError when the chunks hold another count."""
    import numpy as np

    *frames, channels, height, width = image_shape

    def write(file) -> None:
        entry = zipfile.ZipInfo("images.npy", date_time=FIXED_ZIP_TIME)
        entry.compress_type = zipfile.ZIP_STORED
        written = 0
        with zipfile.ZipFile(file, "w") as archive, archive.open(entry, "w", force_zip64=True) as f:
            header = {"descr": "|u1", "fortran_order": False, "shape": (count, *frames, height, width, channels)}
            np.lib.format.write_array_header_1_0(f, header)
            for chunk in chunks:
                f.write(chunk.movedim(-3, -1).contiguous().numpy().tobytes())
                written += chunk.shape[0]
        if written != count:
            raise ValueError(f"write_npz got {written} images, expected {count}")

    write_atomically(path, write)
