"""Register a signed RandomForest(200 trees) with @register as ``signedrf@prod``; warm caches.

``setup_signed_model.py TRACKING_URI``, run in the scenario's work directory: makes an
elliptic-curve key pair (``signing.pem``, ``signing.pub``), registers the model signed with it,
then loads it once into ``warm-verified`` (with ``verify=signing.pub``) and once into
``warm-plain`` (no verification), the caches the warm scenarios time.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sklearn.ensemble import RandomForestClassifier

import registry_sdk as rs

X = np.random.RandomState(0).rand(2000, 20)
Y = (X[:, 0] + X[:, 1] > 1).astype(int)


def _keys() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    Path("signing.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    Path("signing.pub").write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def main(uri: str) -> None:
    """Keys, the signed version, and the two warm caches."""
    _keys()
    client = rs.RegistryClient(uri, cache_dir=Path("train-cache").resolve())

    @rs.register("signedrf", alias="prod", client=client, sign="signing.pem")
    def train(n_estimators: int = 200):
        return RandomForestClassifier(n_estimators=n_estimators, random_state=0).fit(X, Y)

    train()
    for cache, verify in (("warm-verified", "signing.pub"), ("warm-plain", None)):
        loader = rs.RegistryClient(uri, cache_dir=Path(cache).resolve())
        rs.load_model("signedrf@prod", client=loader, verify=verify).predict(X[:5])
    print(train.last_version.ref if train.last_version else "not registered")


if __name__ == "__main__":
    main(sys.argv[1])
