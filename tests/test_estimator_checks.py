"""scikit-learn's estimator checks on TaskGrouper (every check applies and passes).

The one check that can skip, ``check_array_api_input``, needs ``SCIPY_ARRAY_API=1`` in the
environment; stgmtl does not support array-API inputs other than numpy and torch tensors.
"""

from sklearn.utils.estimator_checks import parametrize_with_checks

from stgmtl.grouping import TaskGrouper


@parametrize_with_checks([TaskGrouper(n_groups=3, progress=False)])
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
