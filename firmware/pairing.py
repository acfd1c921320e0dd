# Pairing: the node proves it knows its pairing code; once a person approved it with that
# code, the Pi hands out the node's own key wrapped with a pad only the code can make.
import binascii
import json
import os

import transport

KEY_FILE = "key.json"


def proof(code, hwid):
    """What hello carries instead of the code: HMAC(code, "hello:" + hwid)."""
    return transport.hexlify(transport.hmac_sha256(code.encode(), ("hello:" + hwid).encode()))


def unwrap(code, hwid, wrapped_hex):
    """The node key: wrapped XOR HMAC(code, "key:" + hwid)."""
    pad = transport.hmac_sha256(code.encode(), ("key:" + hwid).encode())
    wrapped = binascii.unhexlify(wrapped_hex)
    if len(wrapped) != len(pad):
        raise ValueError("wrapped key of the wrong length")
    return bytes(a ^ b for a, b in zip(wrapped, pad))


def load_key(path=KEY_FILE):
    try:
        with open(path) as f:
            return binascii.unhexlify(json.load(f)["key"])
    except (OSError, ValueError, KeyError):
        return None


def save_key(key, path=KEY_FILE):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump({"key": transport.hexlify(key)}, f)
    os.rename(tmp, path)


def forget(path=KEY_FILE):
    try:
        os.remove(path)
    except OSError:
        pass


def hello_body(config, caps, firmware):
    return {"hwid": config["hwid"], "firmware": firmware, "capabilities": caps.names(),
            "limits": caps.limits(), "proof": proof(config["pairing_code"], config["hwid"])}


def accept(answer, config):
    """The key when the hello's answer says approved; None while pending."""
    if answer.get("state") != "approved" or not answer.get("key"):
        return None
    return unwrap(config["pairing_code"], config["hwid"], answer["key"])
