"""Integrations with training frameworks (optional extras).

- :mod:`stgmtl.integrations.lightning`: :class:`DataMapCallback` for PyTorch Lightning
  (``pip install "stgmtl[lightning]"``).
- :mod:`stgmtl.integrations.transformers`: :func:`~stgmtl.integrations.transformers.record_datamaps`
  and ``DataMapCallback`` for the Hugging Face ``Trainer`` (``pip install "stgmtl[transformers]"``).

Nothing is imported here, so that ``import stgmtl.integrations`` works without the extras.
"""

__all__: list[str] = []
