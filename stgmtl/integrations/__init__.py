"""Integrations with training frameworks (optional extras).

- :mod:`stgmtl.integrations.lightning`: :class:`DataMapCallback` for PyTorch Lightning
  (``pip install "stgmtl[lightning]"``).

Nothing is imported here, so that ``import stgmtl.integrations`` works without the extras.
"""

__all__: list[str] = []
