"""Ops tooling: the ops home (root and issuer keys, trust and revocation lists), pass issuing,
device and gateway bundles, and the site's Mosquitto configuration."""
