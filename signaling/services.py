"""Everything the handlers need, hung off the app under one typed key."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from media.service import MediaService
from signaling.presence import Presence
from signaling.switchboard import Switchboard
from vwindow.appointments import Appointments
from vwindow.auth import TokenIssuer
from vwindow.cases import Cases
from vwindow.config import Config
from vwindow.db import Database
from vwindow.inspections import Inspections
from vwindow.readings import Readings
from vwindow.store import FileStore
from vwindow.uploads import Uploads


@dataclass
class Services:
    config: Config
    db: Database
    store: FileStore
    tokens: TokenIssuer
    cases: Cases
    presence: Presence
    media: MediaService
    switchboard: Switchboard
    appointments: Appointments
    uploads: Uploads
    readings: Readings
    inspections: Inspections


SERVICES = web.AppKey("services", Services)
