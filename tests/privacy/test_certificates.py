"""Signed erasure certificates: one verifies offline with the service's public key alone, and
fails verification when one byte of it is altered, or under another key."""

from __future__ import annotations

from pathlib import Path
from uuid import uuid4

import httpx
import msgspec
import pytest
from click.testing import CliRunner

from continuity.cli import main
from continuity.erasure import shred_subject
from continuity.runtime import Runtime
from privacy.certificates import CERTIFICATE_KEY, SignedCertificate, sign, verify
from privacy.master_key import Ed25519Signer, SignatureInvalid
from tests.helpers import MUG, TokenFactory

pytestmark = pytest.mark.anyio


async def signed_erasure(client: httpx.AsyncClient, runtime: Runtime, auth: TokenFactory) -> bytes:
    subject = uuid4()
    assert (await client.post("/v1/me/cart/items", json=MUG, headers=auth(subject))).is_success
    certificate = await shred_subject(runtime.store, runtime.vault, subject)
    signer = await runtime.vault.signer(CERTIFICATE_KEY)
    return msgspec.json.encode(sign(signer, certificate))


async def test_a_certificate_verifies_with_the_published_key_and_not_once_altered(
    client: httpx.AsyncClient, runtime: Runtime, auth: TokenFactory, tmp_path: Path
) -> None:
    document = await signed_erasure(client, runtime, auth)
    published = await client.get("/.well-known/continuity-signing-key")  # no token needed
    assert published.status_code == 200, published.text
    key = published.json()
    signed = msgspec.json.decode(document, type=SignedCertificate)
    assert key["key_id"] == signed.signature.key_id
    verify(signed, key["public_key_pem"])
    assert signed.certificate["events_unreadable"] == 2  # the cart opened, the item added

    pem = tmp_path / "signing-key.pem"
    pem.write_text(key["public_key_pem"], encoding="ascii")
    good = tmp_path / "certificate.json"
    good.write_bytes(document)
    runner = CliRunner()
    ok = runner.invoke(main, ["certificate", "verify", str(good), "--public-key", str(pem)])
    assert ok.exit_code == 0, ok.output
    assert "OK" in ok.output

    altered = 0
    for at in range(len(document)):  # every byte of the certificate's values, one at a time
        changed = bytearray(document)
        changed[at] = ord("1") if changed[at] != ord("1") else ord("2")
        try:
            tampered = msgspec.json.decode(bytes(changed), type=SignedCertificate)
        except (msgspec.DecodeError, msgspec.ValidationError):
            continue
        if tampered == signed:
            continue
        with pytest.raises(SignatureInvalid):
            verify(tampered, key["public_key_pem"])
        altered += 1
    assert altered > 50
    bad = tmp_path / "altered.json"
    bad.write_bytes(document.replace(b'"events_unreadable":2', b'"events_unreadable":3'))
    failed = runner.invoke(main, ["certificate", "verify", str(bad), "--public-key", str(pem)])
    assert failed.exit_code == 1
    assert "FAILED" in failed.output


async def test_a_certificate_does_not_verify_under_another_key(
    client: httpx.AsyncClient, runtime: Runtime, auth: TokenFactory
) -> None:
    signed = msgspec.json.decode(
        await signed_erasure(client, runtime, auth), type=SignedCertificate
    )
    stranger = Ed25519Signer.generate()
    with pytest.raises(SignatureInvalid):
        verify(signed, stranger.public_key)
    forged = sign(stranger, msgspec.json.decode(msgspec.json.encode(signed.certificate)))
    own = await runtime.vault.signer(CERTIFICATE_KEY)
    with pytest.raises(SignatureInvalid):
        verify(forged, own.public_key)
