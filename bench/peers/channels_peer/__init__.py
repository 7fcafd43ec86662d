"""Peer: a plain Channels consumer written the way the Channels tutorial does, served by daphne."""
