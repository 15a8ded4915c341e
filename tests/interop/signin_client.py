"""An ERP connector in Python that signs in by itself: an access token from
the identity provider's token endpoint by the OAuth 2.0 client-credentials
grant, renewed in the background at four fifths of its lifetime, and sent
with every call as `authorization: Bearer <token>`.

    python3 tests/interop/signin_client.py SERVER ISSUER CLIENT_ID CLIENT_SECRET SECONDS

Calls the server for SECONDS seconds (longer than a token lives, to see it
renewed) and exits non-zero, naming the check, when a call is refused.
Run by tests/oidc.rs, against npm's oidc-provider.
"""

import sys
import threading
import time

import grpc
import requests

from client import check, records, records_grpc


class ClientCredentials:
    """The current access token of a client, kept fresh by a thread."""

    def __init__(self, issuer, client_id, client_secret, scope=None):
        metadata = requests.get(
            issuer.rstrip("/") + "/.well-known/openid-configuration", timeout=10).json()
        check(metadata["issuer"] == issuer, "the discovery document names its issuer")
        self.endpoint = metadata["token_endpoint"]
        self.auth = (client_id, client_secret)
        self.scope = scope
        self.lock = threading.Lock()
        self.issued = []
        lifetime = self._renew()
        threading.Thread(target=self._keep, args=(lifetime,), daemon=True).start()

    def _renew(self):
        form = {"grant_type": "client_credentials"}
        if self.scope:
            form["scope"] = self.scope
        answer = requests.post(self.endpoint, data=form, auth=self.auth, timeout=10)
        body = answer.json()
        if answer.status_code != 200:
            raise RuntimeError(f"the provider refused: {body.get('error')} {body.get('error_description')}")
        with self.lock:
            self.token = body["access_token"]
            self.issued.append(self.token)
        return body.get("expires_in", 300)

    def _keep(self, lifetime):
        while True:
            time.sleep(max(1, lifetime * 0.8))
            try:
                lifetime = self._renew()
            except Exception as error:  # try again soon, the old one still holds
                print(f"renewal failed: {error}", file=sys.stderr)
                lifetime = 5

    def metadata(self):
        with self.lock:
            return (("authorization", f"Bearer {self.token}"),)


def main(server, issuer, client_id, client_secret, seconds):
    credentials = ClientCredentials(issuer, client_id, client_secret)
    stub = records_grpc.RecordServiceStub(grpc.insecure_channel(server))
    calls = 0
    deadline = time.monotonic() + float(seconds)
    while time.monotonic() < deadline:
        try:
            stub.ListSuppliers(records.ListSuppliersRequest(page_size=1),
                               metadata=credentials.metadata(), timeout=30)
        except grpc.RpcError as error:
            check(False, f"call {calls + 1} refused: {error.code()} {error.details()}")
        calls += 1
        time.sleep(0.25)
    check(calls > 0, f"{calls} calls passed")
    check(len(credentials.issued) >= 3, f"the token was renewed {len(credentials.issued) - 1} times")
    print(f"all sign-in client checks passed ({calls} calls, {len(credentials.issued)} tokens)")


if __name__ == "__main__":
    main(*sys.argv[1:6])
