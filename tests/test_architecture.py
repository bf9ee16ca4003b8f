"""The architecture as rules the code is checked against (docs/architecture.md).

1. inbox does not import channels_app: channels build on the inbox, never the other way
   (channels_app hands inbox its outbound dispatcher at startup instead).
2. Providers do not import each other: each is a package of its own under
   channels_app/webhooks/providers/ (or channels_app/api/ for the API channel) that may use
   the webhook core and the shared `providers.base`, nothing of another provider.
3. Channel families build on `channels_app.common` only: email, live chat and the webhook
   core do not import each other, and common imports none of them. The API channel, a
   provider, builds on the webhook core; the registry lists every provider.
4. Edges (views, API, consumers, tasks, admin) load protected models only through the
   policy's loaders or the selectors: `Conversation.objects` and its kin appear in
   policy, selectors and services only (the rule Zulip's linter keeps for access_message).

Each rule is a function over source text, so `test_a_planted_violation_is_caught` proves it
fails on code that breaks it.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
APPS = ("accounts", "audit", "channels_app", "config", "inbox")
PROTECTED_MODELS = frozenset({"Conversation", "Message", "Contact", "Inbox", "Invoice"})
EDGE_MODULES = frozenset({"views.py", "api.py", "consumers.py", "tasks.py", "admin.py"})
PROVIDER_PACKAGES = "channels_app.webhooks.providers"
SHARED_PROVIDER_MODULE = f"{PROVIDER_PACKAGES}.base"
# Each provider's own package: the webhook providers, and the API channel.
PROVIDER_ROOTS = ("channels_app.webhooks.providers.", "channels_app.api")

# Existing code outside channels_app that breaks a rule, kept visible here until its owner
# moves it (each entry names why it is still there). Nothing new may join this list.
INBOX_IMPORTS_CHANNELS_ALLOWED = {
    # The agent socket relays typing and read marks to live chat visitors; the relay wants
    # inverting like the outbound dispatcher (a hook channels_app registers at startup).
    "inbox/consumers.py",
    # Demo data creates a live chat channel for `make run`.
    "inbox/management/commands/load_demo.py",
}
EDGE_MODEL_ACCESS_ALLOWED = {
    # The admin pages list and edit the protected models themselves; each queryset is
    # narrowed by the delegation mixins (inbox.admin), not loaded by id from a URL.
    "inbox/admin.py",
}


def _module_name(path: Path) -> str:
    relative = path.relative_to(ROOT).with_suffix("")
    parts = relative.parts[:-1] if relative.name == "__init__" else relative.parts
    return ".".join(parts)


def _sources(*packages: str) -> Iterator[tuple[str, str, str]]:
    """(relative path, module name, source) of every Python file of the packages."""
    for package in packages:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            yield str(path.relative_to(ROOT)), _module_name(path), path.read_text()


def _imports(source: str, module: str) -> Iterator[tuple[int, str]]:
    """(line, imported module) of every import, local ones inside functions included."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.rsplit(".", node.level)[0]
                base = f"{package}.{base}" if base else package
            yield node.lineno, base
            for alias in node.names:
                yield node.lineno, f"{base}.{alias.name}"


def inbox_imports_of_channels(path: str, module: str, source: str) -> list[str]:
    if not module.startswith("inbox"):
        return []
    return [
        f"{path}:{line} imports {name}"
        for line, name in _imports(source, module)
        if name == "channels_app" or name.startswith("channels_app.")
    ]


def _provider_of(module: str) -> str | None:
    if module == SHARED_PROVIDER_MODULE or module.startswith(SHARED_PROVIDER_MODULE + "."):
        return None
    if module.startswith(PROVIDER_ROOTS[0]):
        return ".".join(module.split(".")[:4])
    if module == PROVIDER_ROOTS[1] or module.startswith(PROVIDER_ROOTS[1] + "."):
        return PROVIDER_ROOTS[1]
    return None


def providers_importing_each_other(path: str, module: str, source: str) -> list[str]:
    own = _provider_of(module)
    if own is None:
        return []
    found = []
    for line, name in _imports(source, module):
        other = _provider_of(name)
        if other is not None and other != own:
            found.append(f"{path}:{line} ({own}) imports {name}")
    return found


def edges_loading_protected_models(path: str, module: str, source: str) -> list[str]:
    if Path(path).name not in EDGE_MODULES:
        return []
    return [
        f"{path}:{node.lineno} uses {node.value.id}.objects"
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Attribute)
        and node.attr == "objects"
        and isinstance(node.value, ast.Name)
        and node.value.id in PROTECTED_MODELS
    ]


FAMILIES = ("common", "email", "livechat", "webhooks", "api")
# (importer, imported) pairs of families allowed beside "anyone imports common".
FAMILY_EDGES = {("api", "webhooks")}
REGISTRY_MODULE = "channels_app.webhooks.registry"


def _family_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "channels_app" and parts[1] in FAMILIES else None


def families_importing_each_other(path: str, module: str, source: str) -> list[str]:
    own = _family_of(module)
    if own is None:
        return []
    found = []
    for line, name in _imports(source, module):
        other = _family_of(name)
        if other in (None, own, "common") or (own, other) in FAMILY_EDGES:
            continue
        if module == REGISTRY_MODULE and other == "api":
            continue
        found.append(f"{path}:{line} ({own}) imports {name}")
    return found


Rule = Callable[[str, str, str], list[str]]


def _violations(rule: Rule, allowed: set[str] | frozenset[str] = frozenset()) -> list[str]:
    return [
        found
        for path, module, source in _sources(*APPS)
        if path not in allowed
        for found in rule(path, module, source)
    ]


def test_inbox_does_not_import_channels_app() -> None:
    assert _violations(inbox_imports_of_channels, INBOX_IMPORTS_CHANNELS_ALLOWED) == []


def test_providers_do_not_import_each_other() -> None:
    assert _violations(providers_importing_each_other) == []


def test_channel_families_build_on_common_only() -> None:
    assert _violations(families_importing_each_other) == []


def test_edges_load_protected_models_through_the_policy_or_selectors() -> None:
    assert _violations(edges_loading_protected_models, EDGE_MODEL_ACCESS_ALLOWED) == []


def test_the_allowlists_hold_only_live_violations() -> None:
    """An entry whose file was fixed goes: the lists only ever shrink."""
    sources = {path: (module, source) for path, module, source in _sources(*APPS)}
    for rule, allowed in (
        (inbox_imports_of_channels, INBOX_IMPORTS_CHANNELS_ALLOWED),
        (edges_loading_protected_models, EDGE_MODEL_ACCESS_ALLOWED),
    ):
        for path in allowed:
            module, source = sources[path]
            assert rule(path, module, source), f"{path} no longer breaks the rule: take it off the list"


@pytest.mark.parametrize(
    ("rule", "path", "source"),
    [
        (inbox_imports_of_channels, "inbox/selectors.py", "from channels_app.webhooks import services\n"),
        (
            inbox_imports_of_channels,
            "inbox/services.py",
            "def f():\n    from channels_app import outbound\n    outbound.reply_dispatch(1)\n",
        ),
        (
            providers_importing_each_other,
            "channels_app/webhooks/providers/meta/provider.py",
            "from channels_app.webhooks.providers.twilio import client\n",
        ),
        (
            providers_importing_each_other,
            "channels_app/api/provider.py",
            "from channels_app.webhooks.providers.telegram.models import TelegramChannel\n",
        ),
        (
            providers_importing_each_other,
            "channels_app/webhooks/providers/telegram/services.py",
            "from ..meta import selectors\n",
        ),
        (
            families_importing_each_other,
            "channels_app/livechat/services.py",
            "from channels_app.email import parse\n",
        ),
        (
            families_importing_each_other,
            "channels_app/common/outbound.py",
            "def f():\n    from channels_app.webhooks import tasks\n",
        ),
        (
            families_importing_each_other,
            "channels_app/webhooks/services.py",
            "from channels_app.api.models import ApiChannel\n",
        ),
        (
            edges_loading_protected_models,
            "inbox/views.py",
            "def v(r, pk):\n    return Message.objects.get(pk=pk)\n",
        ),
        (
            edges_loading_protected_models,
            "channels_app/livechat/consumers.py",
            "x = Conversation.objects.all()\n",
        ),
        (edges_loading_protected_models, "audit/tasks.py", "Invoice.objects.filter(contact_id=1).delete()\n"),
    ],
)
def test_a_planted_violation_is_caught(rule: Rule, path: str, source: str, tmp_path: Path) -> None:
    planted = tmp_path / Path(path).name
    planted.write_text(source)
    module = path.removesuffix(".py").replace("/", ".")
    assert rule(path, module, planted.read_text())


@pytest.mark.parametrize(
    ("rule", "path", "source"),
    [
        (
            providers_importing_each_other,
            "channels_app/api/provider.py",
            f"from {SHARED_PROVIDER_MODULE} import X\n",
        ),
        (
            families_importing_each_other,
            "channels_app/webhooks/registry.py",
            "from channels_app.api.provider import Api\n",
        ),
        (
            families_importing_each_other,
            "channels_app/api/provider.py",
            "from channels_app.webhooks import items\n",
        ),
        (edges_loading_protected_models, "inbox/selectors.py", "Message.objects.filter(pk=1)\n"),
        (edges_loading_protected_models, "inbox/views.py", "policy.access_conversation(ctx, pk)\n"),
    ],
)
def test_what_the_rules_allow(rule: Rule, path: str, source: str) -> None:
    assert rule(path, path.removesuffix(".py").replace("/", "."), source) == []
