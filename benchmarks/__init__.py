"""PyStorage benchmarks: each group measures PyStorage against an anchor in the same run.

Run ``python -m benchmarks`` (full) or ``python -m benchmarks --quick`` (seconds, no
assertion about speed); ``--group NAME`` runs one group (``--merge`` keeps the other
groups' results from the files already there), ``--out DIR`` picks the folder for
``results.json``, ``results.md`` and ``results.png``.
"""
