"""Masking cost per event on the worker thread: encoding the same ~1 KB exchange with the
default masks, with ten more user masks, and with masking off.

    python -m benchmarks.masking
"""

from __future__ import annotations

import timeit

from moesif_agent import Options
from moesif_agent._wire import WireEncoder

from ._util import median, table
from .transport import exchange


def cost(**options: object) -> float:
    encoder = WireEncoder(Options(application_id="bench", **options))
    ex = exchange()
    ex.request_headers.append(("HTTP_AUTHORIZATION", "Bearer abc.def.ghi"))
    number = 5_000
    return median(timeit.repeat(lambda: encoder.encode(ex), number=number, repeat=7)) / number * 1e6


def main() -> list[list[object]]:
    off = cost(default_masks=False)
    default = cost()
    more = cost(
        request_body_masks=[f"field{n}" for n in range(10)],
        response_body_masks=["name", "owner"],
        request_header_masks=["user-agent"],
    )
    rows: list[list[object]] = [
        ["no masking", f"{off:.1f} µs", "-"],
        ["default masks", f"{default:.1f} µs", f"{default - off:+.1f} µs"],
        ["default + 13 user masks (2 hit)", f"{more:.1f} µs", f"{more - off:+.1f} µs"],
    ]
    print(table(["encode one ~1 KB event (worker)", "µs", "masking cost"], rows))
    return rows


if __name__ == "__main__":
    main()
