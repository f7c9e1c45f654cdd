"""A stand-in identity provider for tests: real keys (cryptography) and a real JWKS endpoint
(http.server on 127.0.0.1, in a thread)."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from uuid import uuid4

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import get_default_algorithms

IDP_ISSUER = "https://idp.example.test/realms/shop"
IDP_AUDIENCE = "continuity-api"

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


@dataclass
class SigningKey:
    """An IdP signing key: its algorithm, `kid` and private half."""

    algorithm: str
    private: PrivateKey
    kid: str = field(default_factory=lambda: uuid4().hex[:12])

    @classmethod
    def generate(cls, algorithm: str) -> SigningKey:
        private: PrivateKey
        if algorithm == "RS256":
            private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        elif algorithm == "ES256":
            private = ec.generate_private_key(ec.SECP256R1())
        elif algorithm == "EdDSA":
            private = ed25519.Ed25519PrivateKey.generate()
        else:
            raise ValueError(algorithm)
        return cls(algorithm, private)

    def public_pem(self) -> str:
        return (
            self.private.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode("ascii")
        )

    def jwk(self) -> dict[str, Any]:
        algorithm = get_default_algorithms()[self.algorithm]
        jwk: dict[str, Any] = algorithm.to_jwk(self.private.public_key(), as_dict=True)
        return {**jwk, "kid": self.kid, "use": "sig", "alg": self.algorithm}

    def sign(self, claims: dict[str, Any], *, kid: str | None = None, named: bool = True) -> str:
        """A JWT with `kid` (default this key's) in its header, or no kid if not `named`."""
        headers = {"kid": kid or self.kid} if named else None
        return jwt.encode(claims, self.private, algorithm=self.algorithm, headers=headers)


def idp_claims(sub: str = "user-42", **override: Any) -> dict[str, Any]:
    """The claims of a customer's token from the IdP; `override` adds, changes or (None) drops."""
    now = datetime.now(UTC)
    claims: dict[str, Any] = {
        "iss": IDP_ISSUER,
        "aud": IDP_AUDIENCE,
        "sub": sub,
        "iat": now,
        "exp": now + timedelta(minutes=5),
        "role": "customer",
        "device": "phone",
    }
    claims.update(override)
    return {k: v for k, v in claims.items() if v is not None}


class JwksServer:
    """Serves {"keys": [...]} at /jwks.json; counts requests; can answer slowly or fail."""

    def __init__(self, keys: list[SigningKey] | None = None) -> None:
        self.keys = list(keys or [])
        self.requests = 0
        self.delay = 0.0
        self.status = 200
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._httpd is not None
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/jwks.json"

    def __enter__(self) -> JwksServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests += 1
                time.sleep(server.delay)
                body = json.dumps({"keys": [k.jwk() for k in server.keys]}).encode()
                self.send_response(server.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._httpd is not None
        assert self._thread is not None
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()
