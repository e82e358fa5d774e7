"""The package's public surface: lazy names resolve, unknown names fail clearly."""

import subprocess
import sys

import pytest

import stgmtl


def test_version_is_a_string():
    assert isinstance(stgmtl.__version__, str) and stgmtl.__version__.count(".") == 2


def test_unknown_name_raises_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        stgmtl.nope  # noqa: B018


@pytest.mark.parametrize("name", sorted(stgmtl._EXPORTS))
def test_every_public_name_resolves(name):
    assert getattr(stgmtl, name) is not None
    assert name in dir(stgmtl)


def test_grouping_does_not_import_torch():
    code = "import sys, stgmtl; stgmtl.group; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_all_lists_exactly_the_exports():
    assert set(stgmtl.__all__) == {"__version__", *stgmtl._EXPORTS}
