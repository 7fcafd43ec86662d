"""ASGI applications for live-server tests: this project with extra states."""
