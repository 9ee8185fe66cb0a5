from __future__ import annotations

from collections.abc import Callable
from itertools import count

import pytest

_n = count(1)


@pytest.fixture
def e2e_database_url(make_database: Callable[[str], str]) -> str:
    """A database of its own: real processes commit, so they must not share the test one."""
    return make_database(f"e2e{next(_n)}")


@pytest.fixture(scope="module")
def e2e_module_database_url(make_database: Callable[[str], str]) -> str:
    """Like e2e_database_url, for a stack that a whole module's tests share."""
    return make_database(f"e2e{next(_n)}")
