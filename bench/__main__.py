"""`make bench`: start the plant and the gateway as separate processes and print the figures."""

from __future__ import annotations

from bench import graph
from bench.stack import running

SEED, LOTS = 42, 20_000


def main() -> None:
    with running(SEED, LOTS) as stack:
        for lines in (
            graph.requests_per_source(stack),
            graph.latency_vs_critical_path(stack),
            graph.recall_genealogy(stack, SEED, LOTS),
        ):
            print("\n".join(lines), flush=True)
            print()


if __name__ == "__main__":
    main()
