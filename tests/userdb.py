"""Put browser users into a bridge's real user database before it starts (tests)."""

from __future__ import annotations

from collections.abc import Iterable

from bridge.settings import Settings
from bridge.users import UserStore, sqlite_url


async def add_users(settings: Settings, users: Iterable[tuple[str, str, tuple[str, ...]]]) -> None:
    """Create the SQLite database of ``settings`` and add (name, password, DIDs) users."""
    settings.node.var_dir.mkdir(parents=True, exist_ok=True)
    store = await UserStore.open(
        settings.store.url or sqlite_url(settings.node.var_dir / "bridge.db")
    )
    try:
        await store.create_schema()
        for name, password, dids in users:
            await store.add_user(name, password, settings.sip.realm, dids=dids)
    finally:
        await store.aclose()
