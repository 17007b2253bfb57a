"""The server media hub: one star per live session, tracks fanned out to subscribers."""
