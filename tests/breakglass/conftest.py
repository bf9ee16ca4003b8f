from tests.inbox.conftest import segments  # noqa: F401  # the fixture, for these tests too
