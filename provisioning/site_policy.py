"""A site's policy, one value in the ops home written into every bundle of the site.

The recent-pass window (`duplicate_window_s`: how long a pass let through at one lane counts
as a repeat at any lane) must be the same at the site's units, which decide (device.toml
`[policy]`), and at its gateway, which keeps the site's shared recent set for that long
(gateway.toml `[policy]`). A value set apart in each file drifts; so ops.json holds it per
site (``SiteRecord.duplicate_window_s``) and the bundles are generated and refreshed from it.

`chot provision site policy SITE [--duplicate-window-s N]` shows or changes it; a change
rewrites the site's device and gateway bundles kept by the home (every other setting kept).
Units and gateways already deployed need their new config copied over and a restart.
"""

import argparse
import logging
import tomllib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from common.i18n import N_, Phrase
from protocol.ids import require_id
from provisioning import bundles, toml_out
from provisioning.errors import OpsError
from provisioning.state import DEFAULT_DUPLICATE_WINDOW_S, HomeFiles

log = logging.getLogger(__name__)

MAX_DUPLICATE_WINDOW_S = 7 * 24 * 3600  # device/config.py and gateway/config.py allow no more


@dataclass(frozen=True)
class SitePolicy:
    site: str
    duplicate_window_s: int
    rewritten: list[str]  # config files whose [policy] changed now


def write_policy(path: Path, duplicate_window_s: int, header: str) -> bool:
    """Set `[policy] duplicate_window_s` in a generated config, keeping every other key;
    False (file untouched) when it already says so."""
    data = tomllib.loads(path.read_text())
    policy = data.setdefault("policy", {})
    if policy.get("duplicate_window_s") == duplicate_window_s:
        return False
    policy["duplicate_window_s"] = duplicate_window_s
    top = {k: v for k, v in data.items() if not isinstance(v, dict)}
    tables = {k: v for k, v in data.items() if isinstance(v, dict)}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(toml_out.dumps({"": top, **tables}, header))
    tmp.replace(path)
    return True


def apply_to_bundles(home: HomeFiles, site: str) -> list[Path]:
    """Write the site's window into its device and live gateway bundles; the changed files."""
    record = home.state.sites.get(site)
    if record is None:
        return []
    window = record.duplicate_window_s
    written = []
    configs = [(d, Path(f) / bundles.DEVICE_CONFIG_NAME) for d, f in record.device_bundles.items()]
    configs += [
        (g, Path(f) / bundles.GATEWAY_CONFIG_NAME)
        for g, f in record.gateway_bundles.items()
        if g in record.gateways
    ]
    for unit, path in sorted(configs):
        if not path.is_file():
            log.warning("%s: bundle config %s is gone; site policy not written", unit, path)
            continue
        header = f"chot {unit} at {site} - site policy written by `chot provision`"
        if write_policy(path, window, header):
            written.append(path)
    return written


def set_site_policy(
    home: HomeFiles, site: str, *, duplicate_window_s: int | None = None
) -> SitePolicy:
    """Show (no value) or change the site's policy; every bundle of the site that says
    otherwise (a change, or a bundle edited by hand) is rewritten to it."""
    record = home.state.sites.get(require_id(site, "site"))
    if record is None:
        raise OpsError(f"no site {site} in this home (add a device or gateway there first)")
    if duplicate_window_s is not None:
        if not 0 <= duplicate_window_s <= MAX_DUPLICATE_WINDOW_S:
            raise OpsError(f"the duplicate window is 0 to {MAX_DUPLICATE_WINDOW_S} s")
        record.duplicate_window_s = duplicate_window_s
        home.save()
    written = apply_to_bundles(home, site)
    if written:
        log.info(
            "site %s: duplicate window %d s written to %d bundles",
            site,
            record.duplicate_window_s,
            len(written),
        )
    return SitePolicy(site, record.duplicate_window_s, [str(p) for p in written])


# --- command line (registered by provisioning/cli.py, which passes its helpers in) -----------

WINDOW = N_("Site {site}: a pass let through counts as a repeat at every lane for {seconds} s")
REWRITTEN = N_("Bundle configs rewritten: {count}")
NEXT_STEP = N_(
    "Next: copy the rewritten device.toml and gateway.toml to the units and the gateway, "
    "and restart them"
)


def add_command(psub, leaf: Callable, group: Callable, output: Callable, home: Callable) -> None:
    """`chot provision site policy SITE [--duplicate-window-s N]`."""

    def run(args: argparse.Namespace):
        policy = set_site_policy(home(args), args.site, duplicate_window_s=args.duplicate_window_s)
        lines: list[str | Phrase] = [
            Phrase(WINDOW, {"site": policy.site, "seconds": policy.duplicate_window_s}),
            Phrase(REWRITTEN, {"count": len(policy.rewritten)}),
            *policy.rewritten,
        ]
        if policy.rewritten:
            lines.append(Phrase(NEXT_STEP))
        return output(asdict(policy), lines)

    sites = group(psub, "site", "a site's policy, written into all its bundles")
    p = leaf(sites, "policy", "show or change the site's policy", run)
    p.add_argument("site")
    p.add_argument(
        "--duplicate-window-s",
        type=int,
        metavar="N",
        help=f"seconds a pass let through counts as a repeat at any lane of the site, at the "
        f"units and the gateway alike (default {DEFAULT_DUPLICATE_WINDOW_S})",
    )
