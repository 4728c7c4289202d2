"""Users in each role, logged-in clients and the products the catalog tests share."""

import pytest

from tests.factories import make_products, make_user


@pytest.fixture
def viewer(db):
    return make_user("victor", role="viewer")


@pytest.fixture
def operator(db):
    return make_user("olivia", role="operator")


@pytest.fixture
def nobody(db):
    """Logged in, but in no group: may see nothing."""
    return make_user("nadia")


@pytest.fixture
def viewer_client(client, viewer):
    client.force_login(viewer)
    return client


@pytest.fixture
def operator_client(client, operator):
    client.force_login(operator)
    return client


@pytest.fixture
def products(db):
    return make_products()
