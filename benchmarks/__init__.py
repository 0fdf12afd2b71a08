"""Benchmarks of the AIOS platform (``make bench``). See ``benchmarks/README.md``.

``benchmarks.harness`` runs one stage per fresh subprocess and records results;
``benchmarks.stages`` is the entry point of those subprocesses; ``benchmarks.data_plane``
holds the data-plane stages (generate, ingest, DuckDB baselines, features).
"""
