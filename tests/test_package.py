"""The package's public surface: lazy names resolve, unknown names fail clearly."""

import importlib
import sys

import pytest

import stgmtl


def test_version_is_a_string():
    assert isinstance(stgmtl.__version__, str) and stgmtl.__version__.count(".") == 2


def test_unknown_name_raises_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        stgmtl.nope  # noqa: B018
