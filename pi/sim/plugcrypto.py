"""The emulated plug's side of the Tapo local protocols' cryptography (KLAP v2 and AES).

Written from the protocols' description: KLAP v2's seeds, key schedule and signed
AES-128-CBC bodies; securePassthrough's RSA-sealed AES key and base64 bodies; the
``login_device`` account check. Nothing is taken from python-kasa.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from typing import Any

from cryptography.hazmat.primitives import padding, serialization
from cryptography.hazmat.primitives.asymmetric import padding as rsa_padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes


class BadSignature(ValueError):
    """A KLAP request whose signature does not match its session."""


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def sha1(data: bytes) -> bytes:
    return hashlib.sha1(data).digest()  # noqa: S324 - the protocol's choice, not ours


def klap_auth_hash(username: str, password: str) -> bytes:
    """KLAP v2: sha256(sha1(username) + sha1(password))."""
    return sha256(sha1(username.encode()) + sha1(password.encode()))


def aes_login_ok(params: dict[str, Any], username: str, password: str) -> bool:
    """``login_device``: base64 of the username's sha1 hex; password plain (v1) or sha1 hex (v2)."""
    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    if params.get("username") != b64(sha1(username.encode()).hex()):
        return False
    if "password2" in params:
        return bool(params["password2"] == b64(sha1(password.encode()).hex()))
    return bool(params.get("password") == b64(password))


def _cbc(key: bytes, iv: bytes, data: bytes, *, encrypt: bool) -> bytes:
    cipher = Cipher(algorithms.AES(key), modes.CBC(iv))
    if encrypt:
        padder = padding.PKCS7(128).padder()
        padded = padder.update(data) + padder.finalize()
        enc = cipher.encryptor()
        return enc.update(padded) + enc.finalize()
    dec = cipher.decryptor()
    padded = dec.update(data) + dec.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    return unpadder.update(padded) + unpadder.finalize()


class AesSession:
    """securePassthrough: AES-128-CBC with a key and IV the plug chose, base64 on the wire."""

    def __init__(self, client_key: RSAPublicKey) -> None:
        self.key = secrets.token_bytes(16)
        self.iv = secrets.token_bytes(16)
        sealed = client_key.encrypt(self.key + self.iv, rsa_padding.PKCS1v15())
        self.sealed_key = base64.b64encode(sealed).decode()

    def encrypt(self, data: bytes) -> str:
        return base64.b64encode(_cbc(self.key, self.iv, data, encrypt=True)).decode()

    def decrypt(self, text: str) -> bytes:
        return _cbc(self.key, self.iv, base64.b64decode(text), encrypt=False)


def aes_session(pem: str) -> Session:
    """A new AES session for the client's RSA public key (PEM)."""
    key = serialization.load_pem_public_key(pem.encode())
    if not isinstance(key, RSAPublicKey):
        raise ValueError("expected an RSA public key")
    session = Session(b"", b"", b"")
    session.aes = AesSession(key)
    return session


class Session:
    """One client session: KLAP seeds and derived keys, or an AES session and login token."""

    def __init__(self, local_seed: bytes, remote_seed: bytes, auth_hash: bytes) -> None:
        self.local_seed = local_seed
        self.remote_seed = remote_seed
        self.auth_hash = auth_hash
        self.verified = False
        self.aes: AesSession | None = None
        self.token: str | None = None
        seeds = local_seed + remote_seed + auth_hash
        # KLAP key schedule: a 16-byte key, a 12-byte IV prefix whose 4-byte suffix is the
        # request's sequence number, and a 28-byte signing prefix.
        self._key = sha256(b"lsk" + seeds)[:16]
        self._iv = sha256(b"iv" + seeds)[:12]
        self._sig = sha256(b"ldk" + seeds)[:28]

    def _seq(self, seq: int) -> bytes:
        return seq.to_bytes(4, "big", signed=True)

    def decrypt(self, body: bytes, seq: int) -> bytes:
        signature, ciphertext = body[:32], body[32:]
        if signature != sha256(self._sig + self._seq(seq) + ciphertext):
            raise BadSignature("bad signature")
        return _cbc(self._key, self._iv + self._seq(seq), ciphertext, encrypt=False)

    def encrypt(self, data: bytes, seq: int) -> bytes:
        ciphertext = _cbc(self._key, self._iv + self._seq(seq), data, encrypt=True)
        return sha256(self._sig + self._seq(seq) + ciphertext) + ciphertext
