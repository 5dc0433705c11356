"""Encryption at rest: a hall master key file wraps one AES-256 key per exam (kept by ``examkeys``); blobs are
AES-GCM.

Destroying an exam's key file (retention) makes every copy of its blobs unreadable, backups included."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import aes_key_unwrap, aes_key_wrap

from hall_server.store import private_files

MASTER_KEY_NAME = "master.key"
BLOB_MAGIC = b"IVGB\x01"
NONCE_BYTES = 12


class KeyUnavailable(Exception):
    """The master key is missing or wrong, or an exam key was destroyed."""


class KeyDestroyed(KeyUnavailable):
    """Retention destroyed the exam's key (or there is no such exam): its data is meant to be gone."""


def load_or_create_master_key(data_dir: str | Path) -> bytes:
    """Read ``<data_dir>/master.key``; create it (mode 0600, whole or not at all, never overwritten) on first
    start."""
    path = Path(data_dir) / MASTER_KEY_NAME
    private_files.create_once(path, AESGCM.generate_key(bit_length=256))
    return load_master_key(data_dir)


def load_master_key(data_dir: str | Path) -> bytes:
    """Read ``<data_dir>/master.key``, which must exist."""
    path = Path(data_dir) / MASTER_KEY_NAME
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        raise KeyUnavailable(f"{path} is missing; restore it from the appliance backup") from None
    if len(key) != 32:
        raise KeyUnavailable(f"{path} is not a 32-byte key; restore it from the appliance backup")
    return key


def new_exam_key() -> bytes:
    return AESGCM.generate_key(bit_length=256)


def wrap_exam_key(master_key: bytes, exam_key: bytes) -> bytes:
    return aes_key_wrap(master_key, exam_key)


def unwrap_exam_key(master_key: bytes, wrapped: bytes) -> bytes:
    try:
        return aes_key_unwrap(master_key, wrapped)
    except Exception as exc:  # InvalidUnwrap: the master key does not belong to this store
        raise KeyUnavailable("cannot unwrap the exam key: wrong master.key for this data directory") from exc


def _aad(exam_id: int, sha256_hex: str) -> bytes:
    # Binds a blob to its exam and name: a blob moved or renamed on disk fails to decrypt.
    return f"invigil-blob:{exam_id}:{sha256_hex}".encode()


def encrypt_blob(exam_key: bytes, exam_id: int, sha256_hex: str, plaintext: bytes) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return BLOB_MAGIC + nonce + AESGCM(exam_key).encrypt(nonce, plaintext, _aad(exam_id, sha256_hex))


def decrypt_blob(exam_key: bytes, exam_id: int, sha256_hex: str, sealed: bytes) -> bytes:
    if not sealed.startswith(BLOB_MAGIC):
        raise ValueError("not an Invigil blob")
    nonce = sealed[len(BLOB_MAGIC) : len(BLOB_MAGIC) + NONCE_BYTES]
    body = sealed[len(BLOB_MAGIC) + NONCE_BYTES :]
    return AESGCM(exam_key).decrypt(nonce, body, _aad(exam_id, sha256_hex))
