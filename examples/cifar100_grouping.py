"""CIFAR-100 demo: record data maps, group the 100 tasks, compare with the superclasses.

The demo lives in the package (:mod:`stgmtl.demo`) so that ``stgmtl demo`` works from an
installed package; this script runs it from a checkout (``make demo``). Options:
``python examples/cifar100_grouping.py --help``.
"""

from stgmtl.demo import main

if __name__ == "__main__":
    raise SystemExit(main())
