"""`make bench`: start the plant and the gateway as separate processes and print the figures."""

from __future__ import annotations

from bench import events, federation, graph, holds, reconciliation, resilience
from bench.stack import running
from simulators import generate

SEED, LOTS = 42, 20_000


def main() -> None:
    dataset = generate(seed=SEED, lots=LOTS)
    with running(SEED, LOTS) as stack:
        for run in (
            lambda: graph.requests_per_source(stack),
            lambda: graph.latency_vs_critical_path(stack),
            lambda: graph.recall_genealogy(stack, dataset),
            lambda: holds.hold_and_release(stack, dataset, stack.data_dir),
            lambda: holds.recall(stack, dataset, stack.data_dir),
            lambda: resilience.cold_and_warm(stack),
            lambda: resilience.throughput(stack, dataset),
            lambda: events.subscriptions(stack, dataset),
            lambda: federation.borrowed_fields(stack),
            lambda: reconciliation.full_sweep(stack),
        ):
            print("\n".join(run()), flush=True)
            print()


if __name__ == "__main__":
    main()
