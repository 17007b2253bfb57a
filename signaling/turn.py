"""ICE servers handed to each participant: coturn ``use-auth-secret`` credentials."""

from __future__ import annotations

from typing import Any

from vwindow.auth import turn_credentials
from vwindow.config import Config


def ice_servers(config: Config, participant_id: str) -> list[dict[str, Any]]:
    media = config.media
    if not media.turn_urls or not media.turn_secret:
        return []
    username, credential = turn_credentials(media.turn_secret, participant_id, media.turn_ttl_s)
    return [{"urls": list(media.turn_urls), "username": username, "credential": credential}]
