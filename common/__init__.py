"""Shared runtime pieces for the scanner, the gateway and the central store.

Sits above `protocol/` (the contracts) and below `device/`, `gateway/` and `central/`: config
base model and field types, key and secret files, systemd notify, CLI errors and printers, and
files reloaded when they change. Nothing here imports an app, `provisioning/` or `chot/`.
"""
