"""``registry verify`` and ``registry seal``: artifacts against their digest and signature."""

from __future__ import annotations

import click

from registry_sdk.cli._common import EXIT_GATE_FAILED, echo_json, json_option, make_client


def _report(result: object, as_json: bool) -> None:
    from registry_sdk.integrity import Verification

    assert isinstance(result, Verification)  # noqa: S101 - what both commands produce
    if as_json:
        echo_json(result.to_dict())
        return
    state = "ok" if result.ok else "FAILED"
    click.echo(f"{result.ref}: {state} ({result.files} files, {result.size} bytes)")
    click.echo(f"  recorded digest: {result.expected or '-'}")
    click.echo(f"  digest in store: {result.actual}")
    if result.signed_by is not None:
        click.echo(f"  signed by: {result.signed_by}")
    for problem in result.problems:
        click.echo(f"  {problem}")


@click.command()
@click.argument("ref")
@click.option(
    "--key",
    "keys",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False),
    help=(
        "A PEM public key, or a PEM file of CA certificates (holding the root), the version "
        "must be signed by (one of them, if repeated)."
    ),
)
@json_option
@click.pass_context
def verify(ctx: click.Context, ref: str, keys: tuple[str, ...], as_json: bool) -> None:
    """Check REF's artifacts in the store against the digest it records, without loading it.

    With --key, they must also match the version's signature by one of the keys (a public key,
    or a CA certificate file for versions signed with a certificate). Exits 1 when
    anything differs, the version is not sealed, or (with --key) not signed by them (for CI);
    0 when all holds.
    """
    result = make_client(ctx).verify(ref, keys=keys or None)
    _report(result, as_json)
    if not result.ok:
        ctx.exit(EXIT_GATE_FAILED)


@click.command()
@click.argument("ref")
@click.option(
    "--force", is_flag=True, help="Re-seal a sealed version whose artifacts changed (restores)."
)
@json_option
@click.pass_context
def seal(ctx: click.Context, ref: str, force: bool, as_json: bool) -> None:
    """Record the digest of REF's artifacts as they are now, so later loads verify them.

    For versions registered by vanilla MLflow. A sealed version whose artifacts changed is
    refused (exit 6) unless --force.
    """
    _report(make_client(ctx).seal(ref, force=force), as_json)


@click.command()
@click.argument("ref")
@click.option(
    "--key",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="The PEM private key (elliptic curve) to sign with.",
)
@click.option(
    "--certificate",
    type=click.Path(exists=True, dir_okay=False),
    help=(
        "The PEM certificate of --key, issued by your CA for signing: the signature carries it, "
        "and verifiers need only the CA's certificate."
    ),
)
@click.option(
    "--chain",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False),
    help="A PEM file of intermediate CA certificates to embed after --certificate (repeatable).",
)
@json_option
@click.pass_context
def sign(
    ctx: click.Context,
    ref: str,
    key: str,
    certificate: str | None,
    chain: tuple[str, ...],
    as_json: bool,
) -> None:
    """Sign REF's files with KEY and store the signature beside them (needs registry-sdk[signing]).

    For a version registered unsigned (by vanilla MLflow, or before a review). Loads that require
    a signature (--key of `registry verify`, REGISTRY_SDK_VERIFY_KEY) then accept it: the public
    key, or with --certificate the CA's certificate.
    """
    from registry_sdk.signing import SIGNATURE_TAG, SigningKey

    if chain and certificate is None:
        msg = "--chain needs --certificate (the certificate of --key)"
        raise click.UsageError(msg)
    signer = SigningKey(key, certificate=certificate, chain=chain)
    mv = make_client(ctx).sign(ref, key=signer)
    if as_json:
        echo_json({"ref": mv.ref, "signed": True, "bundle_sha256": mv.tags.get(SIGNATURE_TAG)})
    else:
        click.echo(f"{mv.ref}: signed ({SIGNATURE_TAG} {mv.tags.get(SIGNATURE_TAG)})")
