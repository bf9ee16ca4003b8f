"""Schemathesis over /api/schema/: what the schema allows the server accepts, and every answer,
to valid and to invalid requests, with a token and with none, is one the schema describes.

The schema is fetched the way an integration fetches it (with its token) and every operation
is exercised in process through the WSGI application, against the test's own database.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import Case
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode
from schemathesis.schemas import APIOperation, BaseSchema
from schemathesis.specs.openapi.checks import (
    positive_data_acceptance,
    response_schema_conformance,
    status_code_conformance,
)

from accounts.models import User
from config.wsgi import application
from tests.inbox.conftest import Segments, grant_inbox

pytestmark = pytest.mark.django_db

CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance, positive_data_acceptance]
# The schema states a cursor's alphabet, not that it decodes to a position (only a `next`
# link's cursor does): a well-formed but made-up cursor is still refused, so for those the
# other checks run without positive_data_acceptance.
CHECKS_FOR_A_MADE_UP_CURSOR = [check for check in CHECKS if check is not positive_data_acceptance]
EXAMPLES = 25  # per operation and mode; the whole file stays well under a minute


@pytest.fixture
def in_test_transaction() -> Iterator[None]:
    # Requests go straight to the WSGI handler, whose request signals would close the
    # connection holding the test's transaction; Django's own test client does the same.
    for signal in (request_started, request_finished):
        signal.disconnect(close_old_connections)
    yield
    for signal in (request_started, request_finished):
        signal.connect(close_old_connections)


@pytest.fixture
def token_header(segments: Segments, service_account: User, issue_token: Any) -> dict[str, str]:
    grant_inbox(segments.support, service_account)
    issued = issue_token(service_account, [segments.support], can_write=True)
    return {"Authorization": f"Bearer {issued.plaintext}"}


@pytest.fixture
def api_schema(token_header: dict[str, str], in_test_transaction: None) -> BaseSchema:
    return schemathesis.openapi.from_wsgi(
        "/api/schema/", application, headers={**token_header, "Accept": "application/vnd.oai.openapi+json"}
    )


@pytest.fixture
def known_ids(segments: Segments) -> dict[str, list[int]]:
    """Ids that exist, in and outside the token's segment: random ids are almost never found."""
    conversations = segments.support_conversations + segments.billing_conversations
    return {
        "conversation_id": [c.pk for c in conversations],
        "contact_id": [c.contact_id for c in conversations],
    }


def _cases(operation: APIOperation, mode: GenerationMode, known_ids: dict[str, list[int]]) -> Any:
    generated = operation.as_strategy(generation_mode=mode)
    names = [p.name for p in operation.path_parameters if p.name in known_ids]
    # Invalid data needs something left to be invalid in once the ids are fixed: a body.
    if not names or (mode is GenerationMode.NEGATIVE and not len(operation.body)):
        return generated
    existing = st.fixed_dictionaries({name: st.sampled_from(known_ids[name]) for name in names})
    return st.one_of(
        generated,
        existing.flatmap(lambda ids: operation.as_strategy(generation_mode=mode, path_parameters=ids)),
    )


def _exercise(
    schema: BaseSchema,
    known_ids: dict[str, list[int]],
    subtests: pytest.Subtests,
    call: Callable[[Case], None],
) -> Counter[str]:
    """Runs `call` on generated cases of every operation and mode, each in its own subtest;
    answers how many cases each of them ran."""
    calls: Counter[str] = Counter()
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in GenerationMode:
            label = f"{operation.label} {mode.value}"
            with subtests.test(operation=operation.label, mode=mode.value):
                _examples(
                    _cases(operation, mode, known_ids),
                    lambda case, label=label: _count(calls, label, call, case),
                )
    return calls


def _count(calls: Counter[str], label: str, call: Callable[[Case], None], case: Case) -> None:
    calls[label] += 1
    call(case)


def _examples(cases: Any, call: Callable[[Case], None]) -> None:
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,  # the same examples on every run: a failure is reproducible
        database=None,  # no example files written into the working tree
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    @given(case=cases)
    def run(case: Case) -> None:
        call(case)

    run()


def _validate(case: Case, headers: dict[str, str]) -> None:
    checks = CHECKS_FOR_A_MADE_UP_CURSOR if "cursor" in (case.query or {}) else CHECKS
    case.call_and_validate(headers=headers, checks=checks)


def test_the_schema_describes_every_answer_to_a_token(
    api_schema: BaseSchema,
    token_header: dict[str, str],
    known_ids: dict[str, list[int]],
    subtests: pytest.Subtests,
) -> None:
    calls = _exercise(api_schema, known_ids, subtests, lambda case: _validate(case, token_header))
    assert len(calls) == 2 * len(list(api_schema.get_all_operations())) >= 14
    assert min(calls.values()) >= EXAMPLES // 2, calls


def test_the_schema_describes_every_answer_to_no_auth(
    api_schema: BaseSchema, known_ids: dict[str, list[int]], subtests: pytest.Subtests
) -> None:
    calls = _exercise(api_schema, known_ids, subtests, lambda case: _validate(case, {}))
    assert len(calls) == 2 * len(list(api_schema.get_all_operations())) >= 14
