"""`make bench`: start the plant and the gateway as separate processes and print the figures.

`python -m bench NAME...` runs only the named groups (`python -m bench workflows`); no name runs them all.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from bench import events, federation, graph, holds, resilience, workflows
from bench.stack import Stack, running
from simulators import Dataset, generate

SEED, LOTS = 42, 20_000

Run = Callable[[Stack, Dataset], list[str]]
# In the order `make bench` runs them; a group's runs share what the one before left behind (holds, recalls).
GROUPS: dict[str, tuple[Run, ...]] = {
    "graph": (
        lambda stack, _: graph.requests_per_source(stack),
        lambda stack, _: graph.latency_vs_critical_path(stack),
        graph.recall_genealogy,
    ),
    "holds": (holds.hold_and_release, holds.recall),
    "resilience": (lambda stack, _: resilience.cold_and_warm(stack), resilience.throughput),
    "events": (events.subscriptions,),
    "federation": (lambda stack, _: federation.borrowed_fields(stack),),
    "workflows": (workflows.figures,),
    "memory": (resilience.memory,),  # last: 10 minutes of load (LOTGRAPH_BENCH_MEMORY_MINUTES)
}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("groups", nargs="*", metavar="NAME", help=f"any of {', '.join(GROUPS)}; none: all")
    chosen = parser.parse_args().groups or list(GROUPS)
    if unknown := [name for name in chosen if name not in GROUPS]:
        parser.error(f"no benchmark group {', '.join(unknown)}; there are {', '.join(GROUPS)}")
    dataset = generate(seed=SEED, lots=LOTS)
    with running(SEED, LOTS) as stack:
        for name in chosen:
            for run in GROUPS[name]:
                print("\n".join(run(stack, dataset)), flush=True)
                print()


if __name__ == "__main__":
    main()
