"""Task grouping: reduce features, seeded k-means, fuzzy memberships, choosing k.

Modules: :mod:`~stgmtl.grouping.reduce`, :mod:`~stgmtl.grouping.kmeans`,
:mod:`~stgmtl.grouping.membership`, :mod:`~stgmtl.grouping.grouper`,
:mod:`~stgmtl.grouping.choose_k`. Nothing here imports torch.
"""
