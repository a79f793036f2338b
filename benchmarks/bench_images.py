"""Speed of upload validation (``catalog.images``) and decoding (``worker.ml.images``) on made images (printed,
never asserted).

Run from the repository root::

    .venv/bin/python benchmarks/bench_images.py [--repeat N]

Prints the median wall time, in milliseconds over ``--repeat`` runs (default 5), of: ``inspect_image`` and
``load_rgb`` on a 48 MP (8000 x 6000) JPEG, quality 80 (JPEG draft mode decodes it at 1/8 and 1/4 scale);
``inspect_image`` on a 64 MP (8000 x 8000) RGBA PNG written at zlib level 1 (its pixel data inflated in
1 MiB pieces, not decoded by Pillow); and both header-only refusals of a 100,000 x 100,000 PNG bomb. The
tests in ``tests/unit/test_upload_images.py`` and ``tests/unit/ml/test_ml_images.py`` check what these
figures rest on (decode size, memory, no decode of a bomb) without timing anything. Measured here (2 CPU
cores, shared): JPEG 17 ms inspect, 76 ms to 1024 px, 24 ms to 256 px; PNG check 100 ms; bomb refusals
under 0.1 ms.
"""

from __future__ import annotations

import argparse
import io
import statistics
import struct
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from catalog.images import ImageRejected, inspect_image  # noqa: E402  (after the path set-up)
from worker.ml.errors import ImageError  # noqa: E402
from worker.ml.images import load_rgb  # noqa: E402


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    """Encode a Pillow image to bytes in format ``fmt`` (Pillow's name) with Pillow's save options."""
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def png_bomb(width: int, height: int) -> bytes:
    """A PNG whose IHDR announces ``width x height`` RGB pixels over one tiny IDAT (PNG spec 11.2.1)."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


def median_ms(call: Callable[[], object], repeat: int) -> float:
    """Median wall time of ``call()`` in milliseconds over ``repeat`` runs (``time.perf_counter``).

    An ``ImageRejected`` or ``ImageError`` raised by ``call`` counts as a normal outcome (a refusal is what
    is being timed).
    """
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        try:
            call()
        except (ImageRejected, ImageError):
            pass
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    """Build the images, time each call, print one line per figure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs per figure; the median is printed")
    args = parser.parse_args()

    gradient = np.linspace(0, 255, 8000, dtype=np.uint8)
    jpeg = encode(Image.fromarray(np.broadcast_to(gradient[None, :, None], (6000, 8000, 3)).copy()), "JPEG", quality=80)
    png = encode(Image.new("RGBA", (8000, 8000)), "PNG", compress_level=1)
    bomb = png_bomb(100_000, 100_000)
    figures = {
        f"inspect_image, 48 MP JPEG ({len(jpeg) / 1e6:.1f} MB)": lambda: inspect_image(jpeg),
        "load_rgb, 48 MP JPEG -> 1024 px": lambda: load_rgb(jpeg),
        "load_rgb, 48 MP JPEG -> 256 px": lambda: load_rgb(jpeg, max_side=256),
        f"inspect_image, 64 MP RGBA PNG ({len(png) / 1e6:.1f} MB)": lambda: inspect_image(png),
        "inspect_image, 10 GP PNG bomb (refused)": lambda: inspect_image(bomb),
        "load_rgb, 10 GP PNG bomb (refused)": lambda: load_rgb(bomb),
    }
    for name, call in figures.items():
        print(f"{name}: {median_ms(call, args.repeat):.2f} ms (median of {args.repeat})", flush=True)


if __name__ == "__main__":
    main()
