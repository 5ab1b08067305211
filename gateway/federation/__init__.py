"""Federation in both directions' support code: remote subgraphs lotgraph reads at start-up (`client.py`),
checks and merges (`composition.py`) into the schema it serves (`supergraph.py`)."""
