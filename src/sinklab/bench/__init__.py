"""Performance measurement for sinklab: throughput against a plain PyTorch loop, MFU against
the machine's measured matmul peak, and what probing and reanalysis cost.

Modules, one job each: `timing` (summaries, interleaving), `rss` (current resident memory),
`peak` (matmul peak, MFU), `recipe` (the composed Hydra config both contenders share), `plain`
(the reference loop), `lightning_path` (the real `train()` with a step clock), `costs` (probe
and reanalysis), `kernels` (which SDPA kernel runs), `profile` (where a step's time goes),
`sections` (each benchmark section, run on the shared recipe into plain records), `report` (the
record as markdown tables, and the JSON), `cli` (`make bench`: parse and check the options, call
the sections, hand the record to `report`).
"""
