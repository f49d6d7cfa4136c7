"""Seed sweeps: the same variants trained under several seeds, reported as mean and spread.

`queue` turns a sweep into DVC experiments (one per seed, `dvc exp run --queue`), `collect`
gathers the finished runs from MLflow by their `sweep` tag into `reports/sweeps/<name>.json`,
`stats` says what the runs show (mean, spread, intervals, whether a gain is beyond noise), and
`cli` is `deeplecture-sweep`. The report renders each collected sweep (reporting/sweeps.py).
"""
