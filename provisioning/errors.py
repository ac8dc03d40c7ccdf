"""Refusals of the ops tool: the command line prints them and exits 1."""


class OpsError(Exception):
    """A refusal (would overwrite a key, unknown issuer, duplicate device, ...)."""


class VersionError(OpsError):
    """Refused to sign a version that is not strictly newer than the last one signed."""
