"""Writes a small PKI for the TLS tests into the directory given on standard input (JSON
{"dir": ...}), with the cryptography package as an independent implementation of X.509:

  ca.pem, ca2.pem                 two certificate authorities
  server.pem, server.key          localhost and 127.0.0.1, signed by ca
  server2.pem, server2.key        the same names, signed by ca2 (the rotated certificate)
  client.pem, client.key          a client certificate signed by ca, for mutual TLS

and, for each entry of the optional "spiffe" list ({"stem": ..., "id": "spiffe://...", "ca":
"ca" or "ca2"}), STEM.pem and STEM.key: a client certificate whose URI SAN is that SPIFFE ID,
as a SPIFFE X.509-SVID carries it.
"""

import datetime
import ipaddress
import json
import os
import sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def name(common_name):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def write(directory, filename, data):
    with open(os.path.join(directory, filename), "wb") as f:
        f.write(data)


def pem(certificate):
    return certificate.public_bytes(serialization.Encoding.PEM)


def key_pem(key):
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def certificate(subject, key, issuer, issuer_key, ca=False, usage=None, names=None):
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name(subject))
        .issuer_name(name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
    if usage:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def authority(directory, filename, common_name):
    key = ec.generate_private_key(ec.SECP256R1())
    cert = certificate(common_name, key, common_name, key, ca=True)
    write(directory, filename, pem(cert))
    return common_name, key


def leaf(directory, stem, subject, ca, usage, names=None):
    key = ec.generate_private_key(ec.SECP256R1())
    cert = certificate(subject, key, ca[0], ca[1], usage=usage, names=names)
    write(directory, stem + ".pem", pem(cert))
    write(directory, stem + ".key", key_pem(key))


def main():
    request = json.load(sys.stdin)
    directory = request["dir"]
    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    ca = authority(directory, "ca.pem", "iamd test CA")
    ca2 = authority(directory, "ca2.pem", "iamd test CA 2")
    leaf(directory, "server", "localhost", ca, ExtendedKeyUsageOID.SERVER_AUTH, names)
    leaf(directory, "server2", "localhost", ca2, ExtendedKeyUsageOID.SERVER_AUTH, names)
    leaf(directory, "client", "service-a", ca, ExtendedKeyUsageOID.CLIENT_AUTH)
    authorities = {"ca": ca, "ca2": ca2}
    for svid in request.get("spiffe", []):
        uri = [x509.UniformResourceIdentifier(svid["id"])]
        ca_of = authorities[svid["ca"]]
        leaf(directory, svid["stem"], svid["stem"], ca_of, ExtendedKeyUsageOID.CLIENT_AUTH, uri)
    print("ok")


if __name__ == "__main__":
    main()
