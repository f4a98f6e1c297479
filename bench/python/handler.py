"""BASELINE ONLY - not part of the product.

The same job as the Rust handler (`handler/`), written the way a typical
Python Azure Function would do it with Microsoft's SDKs from PyPI:
DefaultAzureCredential, KeyClient, ResourceGraphClient and
PostgreSQLManagementClient with its long-running-operation poller.

It speaks the custom-handler protocol (the benchmark runs it under the same
Functions host simulator as the Rust handler) with the standard library's
ThreadingHTTPServer, so every figure compares the two on the same path:
POST /KeyEvent plans a rotation (one queue message per server), POST
/RotateServer moves one server to the key's current version, GET / answers
the readiness probe.

Settings (environment):
  FUNCTIONS_CUSTOMHANDLER_PORT  port to listen on (set by the host)
  CMK_SUBSCRIPTIONS             comma-separated subscription ids
  CMK_ARM_ENDPOINT              Resource Manager / Resource Graph base URL
  CMK_KEYVAULT_URL              benchmark only: the URL every vault host is
                                reached at (the local stand-in)
  IDENTITY_ENDPOINT, IDENTITY_HEADER  managed identity (set by Functions)
  REQUESTS_CA_BUNDLE            benchmark only: trusts the stand-in's cert
"""

import json
import logging
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.identity import DefaultAzureCredential
from azure.keyvault.keys import KeyClient, KeyOperation, KeyType
from azure.mgmt.postgresqlflexibleservers import PostgreSQLManagementClient
from azure.mgmt.postgresqlflexibleservers.models import (
    DataEncryption,
    ServerForPatch,
    ServerPropertiesForPatch,
)
from azure.mgmt.resourcegraph import ResourceGraphClient
from azure.mgmt.resourcegraph.models import QueryRequest, QueryRequestOptions

logging.basicConfig(
    stream=sys.stdout, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s"
)
# The SDKs log every request and response at INFO; the usual fix.
logging.getLogger("azure").setLevel(logging.WARNING)
log = logging.getLogger("cmk")

SUBSCRIPTIONS = [s.strip().lower() for s in os.environ["CMK_SUBSCRIPTIONS"].split(",") if s.strip()]
ARM_ENDPOINT = os.environ.get("CMK_ARM_ENDPOINT", "https://management.azure.com")
KEYVAULT_URL = os.environ.get("CMK_KEYVAULT_URL")
VAULT_SUFFIX = ".vault.azure.net"
KEY_EVENTS = {
    "microsoft.keyvault.keynewversioncreated",
    "microsoft.keyvault.keynearexpiry",
    "microsoft.keyvault.keyexpired",
}
BUSY_STATES = {"updating", "starting", "restarting", "stopping", "provisioning", "dropping"}

# Clients are created once per process and reused, as the Functions docs advise.
credential = DefaultAzureCredential()
graph = ResourceGraphClient(credential, base_url=ARM_ENDPOINT)
_clients = {}
_clients_lock = threading.Lock()


def key_client(vault_host):
    with _clients_lock:
        if vault_host not in _clients:
            url = KEYVAULT_URL or f"https://{vault_host}"
            # The stand-in's URL is not under vault.azure.net, so the
            # challenge's resource cannot match it (a documented option).
            _clients[vault_host] = KeyClient(url, credential, verify_challenge_resource=False)
        return _clients[vault_host]


def postgres_client(subscription):
    key = ("pg", subscription)
    with _clients_lock:
        if key not in _clients:
            _clients[key] = PostgreSQLManagementClient(credential, subscription, base_url=ARM_ENDPOINT)
        return _clients[key]


def decode(value):
    """The host JSON-encodes strings a second time."""
    for _ in range(2):
        if isinstance(value, str) and value.lstrip()[:1] in ("{", "[", '"'):
            value = json.loads(value)
    return value


def parse_key_id(kid):
    """https://{vault}/keys/{name}[/{version}] -> (vault, name, version)."""
    rest = kid.split("://", 1)[1]
    host, _, path = rest.partition("/")
    parts = [p for p in path.split("/") if p]
    if len(parts) < 2 or parts[0].lower() != "keys":
        raise ValueError(f"not a key identifier: {kid}")
    version = parts[2] if len(parts) > 2 else None
    return host.split(":")[0].lower(), parts[1].lower(), version


def unusable(key):
    """Why the key's current version may not be set on a server, or None."""
    props, now = key.properties, time.time()
    if not props.enabled:
        return "version is disabled"
    if props.expires_on and props.expires_on.timestamp() <= now:
        return "version has expired"
    if props.not_before and props.not_before.timestamp() > now:
        return "version is not active yet"
    if key.key_type not in (KeyType.rsa, KeyType.rsa_hsm):
        return f"key type {key.key_type} is not RSA"
    if len(key.key.n or b"") * 8 not in (2048, 3072, 4096):
        return "RSA size is not 2048, 3072 or 4096"
    ops = set(key.key_operations or [])
    if not {KeyOperation.wrap_key, KeyOperation.unwrap_key} <= ops:
        return "wrapKey/unwrapKey not permitted"
    return None


QUERY = """resources
| where type =~ 'microsoft.dbforpostgresql/flexibleservers'
| where tostring(properties.dataEncryption.type) =~ 'AzureKeyVault'
| extend pk = tolower(tostring(properties.dataEncryption.primaryKeyURI)), gk = tolower(tostring(properties.dataEncryption.geoBackupKeyURI))
| extend pkVault = extract(@'^https://([^/:]+)', 1, pk), pkName = extract(@'^https://[^/]+/keys/([^/?]+)', 1, pk)
| extend gkVault = extract(@'^https://([^/:]+)', 1, gk), gkName = extract(@'^https://[^/]+/keys/([^/?]+)', 1, gk)
| where (pkVault == '{vault}' and pkName == '{name}') or (gkVault == '{vault}' and gkName == '{name}')
| project id, name, subscriptionId, resourceGroup, state = tostring(properties.state), pk, gk
| order by id asc"""


def find_servers(vault, name):
    query = QUERY.replace("{vault}", vault).replace("{name}", name)
    rows, skip_token = [], None
    while True:
        options = QueryRequestOptions(top=1000, skip_token=skip_token, result_format="objectArray")
        page = graph.resources(QueryRequest(subscriptions=SUBSCRIPTIONS, query=query, options=options))
        rows.extend(page.data)
        skip_token = page.skip_token
        if not skip_token:
            return rows


def reply(status=200, logs=(), outputs=None):
    return status, {"Outputs": outputs or {}, "Logs": list(logs), "ReturnValue": None}


def key_event(invocation):
    event = decode(invocation["Data"]["event"])
    event_type = event.get("eventType") or event.get("type") or ""
    if event_type.lower() not in KEY_EVENTS:
        message = f"ignored {event_type}: not a key event"
        log.info(message)
        return reply(logs=[message])
    data = decode(event["data"])
    vault, name, _ = parse_key_id(data["Id"])
    if not vault.endswith(VAULT_SUFFIX):
        return reply(logs=[f"refused event {event['id']}: vault {vault}"])
    try:
        key = key_client(vault).get_key(name)
        problem = unusable(key)
        if problem:
            log.warning("current version of %s cannot be used: %s", name, problem)
            return reply(logs=[problem])
        servers = find_servers(vault, name)
    except HttpResponseError as e:
        log.warning("will retry: %s", e.message)
        return reply(500, [str(e.message)])
    key_id = f"https://{vault}/keys/{name}"
    messages = [
        {"serverId": s["id"], "keyId": key_id, "eventId": event["id"]}
        for s in servers
        if s["subscriptionId"].lower() in SUBSCRIPTIONS
    ]
    message = f"{len(messages)} server(s) queued for {key.id}"
    log.info(message)
    return reply(logs=[message], outputs={"rotations": messages})


def rotate_server(invocation):
    message = decode(invocation["Data"]["message"])
    parts = message["serverId"].split("/")
    subscription, group, server_name = parts[2], parts[4], parts[8]
    vault, name, _ = parse_key_id(message["keyId"])
    postgres = postgres_client(subscription)
    try:
        server = postgres.servers.get(group, server_name)
        encryption = server.properties.data_encryption
        slots = {}
        for slot in ("primary_key_uri", "geo_backup_key_uri"):
            uri = getattr(encryption, slot, None)
            if uri:
                v, n, version = parse_key_id(uri)
                if (v, n) == (vault, name) and version:
                    slots[slot] = version
        if not slots:
            return reply(logs=[f"{server_name} does not pin this key"])
        keys = key_client(vault)
        current = keys.get_key(name)
        problem = unusable(current)
        if problem:
            return reply(logs=[f"{server_name} stays: {problem}"])
        target = current.properties.version
        stale = {slot: v for slot, v in slots.items() if v != target}
        if not stale:
            return reply(logs=[f"{server_name} already uses {target}"])
        for version in stale.values():
            try:
                old = keys.get_key(name, version)
            except ResourceNotFoundError:
                continue
            if old.properties.created_on > current.properties.created_on:
                return reply(logs=[f"{server_name} is on a newer version; not moved back"])
        state = (server.properties.state or "").lower()
        if state in BUSY_STATES:
            return reply(500, [f"{server_name} is {state}"])
        if state != "ready":
            log.error("%s is %s and was not touched", server_name, state)
            return reply(logs=[f"{server_name} is {state}"])

        new_uri = {slot: f"https://{vault}/keys/{name}/{target}" for slot in stale}
        patch = DataEncryption(
            type=encryption.type,
            primary_key_uri=new_uri.get("primary_key_uri", encryption.primary_key_uri),
            primary_user_assigned_identity_id=encryption.primary_user_assigned_identity_id,
            geo_backup_key_uri=new_uri.get("geo_backup_key_uri", encryption.geo_backup_key_uri),
            geo_backup_user_assigned_identity_id=encryption.geo_backup_user_assigned_identity_id,
        )
        body = ServerForPatch(properties=ServerPropertiesForPatch(data_encryption=patch))
        updated = postgres.servers.begin_update(group, server_name, body).result()
    except HttpResponseError as e:
        log.warning("will retry %s: %s", server_name, e.message)
        return reply(500, [str(e.message)])
    after = updated.properties.data_encryption
    for slot, uri in new_uri.items():
        if (getattr(after, slot, "") or "").lower() != uri.lower():
            return reply(500, [f"update of {server_name} did not take effect"])
    message = f"{server_name} rotated to {target} (verified)"
    log.info(message)
    return reply(logs=[message])


FUNCTIONS = {"/KeyEvent": key_event, "/RotateServer": rotate_server}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out as two writes; without this the body waits
    # for the client's delayed ACK (40 ms).
    disable_nagle_algorithm = True

    def log_message(self, *args):
        pass

    def send_json(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self.send_json(200, {"status": "ready"})

    def do_POST(self):
        length = int(self.headers.get("Content-Length", 0))
        invocation = json.loads(self.rfile.read(length))
        function = FUNCTIONS.get(self.path)
        if function is None:
            self.send_json(404, {"error": "no such function"})
            return
        try:
            status, body = function(invocation)
        except Exception as e:  # a bug or an unexpected answer: let it be redelivered
            log.exception("invocation failed")
            status, body = reply(500, [repr(e)])
        self.send_json(status, body)


if __name__ == "__main__":
    port = int(os.environ.get("FUNCTIONS_CUSTOMHANDLER_PORT", "8080"))
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    log.info("listening on %d", port)
    server.serve_forever()
