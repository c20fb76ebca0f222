"""An SNMPv3 manager that is not Greenwave's code (pysnmp): GET of OIDs
with authPriv (HMAC-SHA-256, AES-128), the context naming the
intersection. Prints one `oid value` line per binding; exits 1 on any
error (printed). Run by tests/ntcip.rs.

    python ntcip_v3_get.py PORT USER AUTH_PASS PRIV_PASS CONTEXT OID...
"""

import asyncio
import sys

from pysnmp.hlapi.v3arch.asyncio import (
    ContextData,
    ObjectIdentity,
    ObjectType,
    SnmpEngine,
    UdpTransportTarget,
    UsmUserData,
    get_cmd,
    usmAesCfb128Protocol,
    usmHMAC192SHA256AuthProtocol,
)


async def main(port, user, auth, priv, context, oids):
    error, status, index, binds = await get_cmd(
        SnmpEngine(),
        UsmUserData(
            user,
            auth,
            priv,
            authProtocol=usmHMAC192SHA256AuthProtocol,
            privProtocol=usmAesCfb128Protocol,
        ),
        await UdpTransportTarget.create(("127.0.0.1", port), timeout=2, retries=1),
        ContextData(contextName=context),
        *[ObjectType(ObjectIdentity(oid)) for oid in oids],
    )
    if error or status:
        print(f"error: {error or status.prettyPrint()} at {index}")
        return 1
    for name, value in binds:
        print(f"{name} {value.prettyPrint()}")
    return 0


if __name__ == "__main__":
    port, user, auth, priv, context, *oids = sys.argv[1:]
    sys.exit(asyncio.run(main(int(port), user, auth, priv, context, oids)))
