"""EU Digital COVID Certificates: verify throughput and a unit's frame -> decision latency.

- DCC verify (QR text -> verdict, decode chain + DSC lookup + site rules) against a bare
  `cryptography` verify of the very same Sig_structure bytes and signatures, precomputed, in
  the same run, interleaved in small blocks; ES256 and PS256. Goal <= 1.5x.
- frame -> decision for a DCC QR (decode_frame + Decider.decide) against bare decode + verify
  of the same frames (zxing-cpp decode, base45/zlib/COSE parse, bare signature check).
  Goal <= 1.15x, as for chot passes.
"""

import sys
import time
from pathlib import Path

import cbor2
import numpy as np
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._table import markdown, rate, row, time_each
from device import synthetic
from device.camera import Frame
from device.decide import Decider, Policy
from device.decode import decode_frame, make_decoder
from harness import dcc_pki as pki
from harness.dcc_pki import NOW
from protocol.clock import Clock
from protocol.dcc import (
    ALG_ES256,
    ALG_PS256,
    decode_dcc,
    parse_cose,
    qr_to_cose,
    verify_dcc,
)
from protocol.dcc_trust import DccTrust, direct_trust

SHA256 = hashes.SHA256()
PSS = padding.PSS(mgf=padding.MGF1(SHA256), salt_length=padding.PSS.AUTO)


def _texts(signer: pki.Signer, n: int) -> list[str]:
    """Distinct certificates (each its own ci and iat), so no cache can help the chain."""
    texts = []
    for i in range(n):
        hcert = pki.vaccination(ci=f"URN:UVCI:01:VN:BENCH{i:010d}#X")
        claims = pki.cwt(hcert, iat=NOW - 86400 - i)
        texts.append(pki.to_qr(pki.sign_cose(signer, cbor2.dumps(claims))))
    return texts


def _bare_verifier(signer: pki.Signer, trust: DccTrust):
    key = trust.dscs[signer.kid].public_key
    if signer.alg == ALG_ES256:
        return lambda item: key.verify(item[1], item[0], ec.ECDSA(SHA256))
    return lambda item: key.verify(item[1], item[0], PSS, SHA256)


def _signed(signer: pki.Signer, texts: list[str]) -> list[tuple[bytes, bytes]]:
    """Precomputed (Sig_structure, signature) pairs: the bare reference does no decoding."""
    return [_item(decode_dcc(text).msg, signer) for text in texts]


def throughput_rows(signers: dict[str, pki.Signer], trust: DccTrust, quick: bool) -> list[dict]:
    rows = []
    n = 300 if quick else 2000
    clock = Clock.synced(NOW)
    for name, signer in signers.items():
        texts = _texts(signer, n)
        signed = _signed(signer, texts)
        bare = _bare_verifier(signer, trust)

        def chain(text: str) -> None:
            assert verify_dcc(text, trust, clock).reason.value == "ok"

        chain_samples: list[float] = []
        bare_samples: list[float] = []
        block = 50
        for _ in range(3):
            for i in range(0, n, block):
                bare_samples += time_each(bare, signed[i : i + block])
                chain_samples += time_each(chain, texts[i : i + block])
        chain_rate, bare_rate = rate(chain_samples), rate(bare_samples)
        ratio = bare_rate / chain_rate
        rows.append(
            row(
                f"DCC verify {name}: HC1 text -> verdict",
                f"{chain_rate:,.0f} /s",
                f"{bare_rate:,.0f} /s bare cryptography verify",
                ratio,
                "<= 1.50x",
                ratio <= 1.5,
            )
        )
    return rows


def latency_rows(signers: dict[str, pki.Signer], trust: DccTrust, quick: bool) -> list[dict]:
    rows = []
    count = 30 if quick else 120
    for name, signer in signers.items():
        rng = np.random.default_rng(7)
        texts = _texts(signer, count)
        frames = [synthetic.render_frame(t, rng=rng, difficulty="easy") for t in texts]
        decoder = make_decoder("zxing")
        decider = Decider(None, None, Policy(), lambda: Clock.synced(NOW), dcc_trust=trust)
        bare = _bare_verifier(signer, trust)
        unit, ref = [], []
        for i, (gray, text) in enumerate(zip(frames, texts, strict=True)):
            frame = Frame(gray=gray, t=0.0, index=i)
            for order in (0, 1) if i % 2 else (1, 0):  # alternate who goes first
                t0 = time.perf_counter()
                if order == 0:
                    found = decode_frame(decoder, frame)
                    decisions = [decider.decide(t) for t in found]
                    dt = time.perf_counter() - t0
                    ok = bool(decisions) and decisions[0].reason.value == "ok"
                else:
                    seen = decoder.decode(gray)
                    good = False
                    if seen:
                        msg = parse_cose(qr_to_cose(seen[0]))
                        bare(_item(msg, signer))
                        good = True
                    dr = time.perf_counter() - t0
            if found and found[0] == text and ok and good:
                unit.append(dt * 1000)
                ref.append(dr * 1000)
        for q in (50, 99):
            c = float(np.percentile(unit, q)) if unit else float("nan")
            r = float(np.percentile(ref, q)) if ref else float("nan")
            rows.append(
                {
                    "figure": f"DCC frame->decision p{q} ms, 640x480 zxing {name} "
                    f"({len(unit)}/{count} decoded)",
                    "chot": round(c, 3),
                    "reference": round(r, 3),
                    "ratio": round(c / r, 3) if r else float("nan"),
                    "goal": "<= 1.15x",
                    "ok": bool(r) and c / r <= 1.15,
                }
            )
    return rows


def _item(msg, signer: pki.Signer) -> tuple[bytes, bytes]:
    """Sig_structure and the signature as `cryptography` takes it (DER for ECDSA)."""
    sig = msg.signature
    if signer.alg == ALG_ES256:
        sig = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
    return msg.to_be_signed(), sig


def run(quick: bool = False) -> list[dict]:
    ca = pki.DccCa()
    signers = {"ES256": pki.make_signer(ca, ALG_ES256), "PS256": pki.make_signer(ca, ALG_PS256)}
    trust = DccTrust(
        1, NOW - 10, NOW + 86400, direct_trust(s.der for s in signers.values()).dscs, b"b" * 32
    )
    return throughput_rows(signers, trust, quick) + latency_rows(signers, trust, quick)


if __name__ == "__main__":
    print(markdown(run(quick="--quick" in sys.argv)))
