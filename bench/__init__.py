"""Benchmarks: ``python -m bench NAME`` runs ``bench/NAME.py``; results go to ``bench/results/``."""
