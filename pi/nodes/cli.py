"""``edgepair node …``: pair, name and remove nodes, manage their jobs, flash boards.

Everything but ``flash`` asks the running node daemon over its admin endpoints (loopback,
signed with the Pi's handshake key): the daemon is the registry's one writer, and an
approval takes effect at once in the process that answers the node.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from handshake.client import HandshakeClient
from handshake.errors import ConfigError, EdgepairError, PeerUnavailable, ValidationError
from handshake.util.cliexit import EXIT_FAILED, EXIT_OK, report
from handshake.util.urls import local_url
from pi import config as pi_config
from pi.nodes import flash as flashing
from pi.nodes.config import NodesConfig
from pi.nodes.wire import PREFIX

DEFAULT_CONFIG = Path("/etc/edgepair/pi.toml")


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    try:
        config = pi_config.load(args.config)
        if config.nodes is None:
            raise ConfigError([f"{args.config}: [nodes]: section missing (the node daemon "
                               "is not configured)"])
        result: int = args.func(args, config)
        return result
    except EdgepairError as exc:
        return report(exc)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgepair node", description="ESP32 nodes.")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="the Pi's config")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("list", help="approved and pending nodes")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_list)
    p = sub.add_parser("approve", help="approve a pending node with its pairing code")
    p.add_argument("hwid")
    p.add_argument("--code", required=True, help="the code `edgepair node flash` printed")
    p.add_argument("--name", required=True)
    p.add_argument("--role", help="what it is for: blinds, heating, door …")
    p.set_defaults(func=cmd_approve)
    p = sub.add_parser("remove", help="forget a node: its requests get 401")
    p.add_argument("node", help="name or hardware id")
    p.set_defaults(func=cmd_remove)
    p = sub.add_parser("rename", help="give a node another name")
    p.add_argument("node")
    p.add_argument("name")
    p.set_defaults(func=cmd_rename)
    job = sub.add_parser("job", help="jobs: add|list|rm").add_subparsers(
        dest="job", required=True, metavar="JOBCOMMAND")
    p = job.add_parser("add", help="add a job (checked against the node's capabilities)")
    p.add_argument("id")
    p.add_argument("--node", required=True)
    p.add_argument("--capability", required=True)
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE")
    for flag in ("--at", "--after", "--then", "--reading", "--source"):
        p.add_argument(flag)
    for flag in ("--delay-s", "--above", "--below"):
        p.add_argument(flag, type=float)
    p.set_defaults(func=cmd_job_add)
    p = job.add_parser("list", help="jobs and their last execution")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_job_list)
    p = job.add_parser("rm", help="remove a job added here")
    p.add_argument("id")
    p.set_defaults(func=cmd_job_rm)
    p = sub.add_parser("flash", help="put MicroPython and the node firmware on a board")
    p.add_argument("--port", required=True, help="the board's serial port (/dev/ttyUSB0)")
    p.add_argument("--erase", action="store_true", help="erase the flash first")
    p.add_argument("--image", type=Path, help="a MicroPython ESP32 .bin to write first")
    p.add_argument("--wifi-ssid")
    p.add_argument("--wifi-password-file", type=Path,
                   help="a file holding the Wi-Fi password (else asked for, or "
                        "$EDGEPAIR_WIFI_PASSWORD)")
    p.add_argument("--hwid", help="default: a new random id")
    p.add_argument("--capability", action="append", default=[], metavar="NAME[:k=v,…]",
                   help="relay, motor, input, temperature, analog (repeat)")
    p.add_argument("--pi-url", help="default: [nodes] url, or http://<pi.address>:<port>")
    p.add_argument("--firmware", type=Path, default=flashing.FIRMWARE_DIR,
                   help="the firmware folder (default: %(default)s)")
    p.add_argument("--out", type=Path, help="write the bundle here (default: a temp folder)")
    p.add_argument("--dry-run", action="store_true", help="print the commands, write the "
                   "bundle, touch no board")
    p.set_defaults(func=cmd_flash)
    return parser


# -- talking to the daemon ---------------------------------------------------------------------

def _call(config: pi_config.PiConfig, method: str, path: str, body: Any = None) -> Any:
    nodes = config.nodes
    assert nodes is not None
    url = local_url(nodes.listen)

    async def go() -> Any:
        async with HandshakeClient(url, config.secrets().handshake_key) as client:
            return await client.request(method, PREFIX + path, body)
    try:
        return asyncio.run(go())
    except PeerUnavailable as exc:
        raise PeerUnavailable(f"the node daemon does not answer at {url} ({exc}): is "
                              "`edgepair pi run node` running?") from None


def cmd_list(args: argparse.Namespace, config: pi_config.PiConfig) -> int:
    answer = _call(config, "GET", "/admin/nodes")
    if args.json:
        print(json.dumps(answer, indent=1))
        return EXIT_OK
    nodes = answer["nodes"]
    if not nodes:
        print("no nodes yet: flash a board (edgepair node flash) and power it on")
    for n in nodes:
        readings = ", ".join(f"{k}={v['value']}{v.get('unit') or ''}"
                             for k, v in n["readings"].items())
        nxt = n.get("next_job")
        print(f"{n['hwid']:18} {n['state']:8} {n.get('name') or '-':14} "
              f"{n.get('role') or '-':10} {','.join(n['capabilities']):22} "
              f"{readings}{'  next ' + nxt['id'] if nxt else ''}")
    return EXIT_OK


def cmd_approve(args: argparse.Namespace, config: pi_config.PiConfig) -> int:
    answer = _call(config, "POST", "/admin/approve", {"hwid": args.hwid, "code": args.code,
                                                     "name": args.name, "role": args.role})
    print(f"approved {answer['hwid']} as {answer['name']}: it gets its key at its next hello")
    return EXIT_OK


def cmd_remove(args: argparse.Namespace, config: pi_config.PiConfig) -> int:
    answer = _call(config, "POST", "/admin/remove", {"node": args.node})
    print(f"removed {answer['name']} ({answer['removed']})")
    return EXIT_OK


def cmd_rename(args: argparse.Namespace, config: pi_config.PiConfig) -> int:
    answer = _call(config, "POST", "/admin/rename", {"node": args.node, "name": args.name})
    print(f"{answer['hwid']} is now {answer['name']}")
    return EXIT_OK


def _params(items: list[str]) -> dict[str, Any]:
    out = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValidationError(f"expected KEY=VALUE, got {item!r}", "--param")
        out[key] = flashing.typed_value(raw)
    return out


def cmd_job_add(args: argparse.Namespace, config: pi_config.PiConfig) -> int:
    job: dict[str, Any] = {"id": args.id, "node": args.node, "capability": args.capability,
                           "params": _params(args.param)}
    for key in ("at", "after", "then", "reading", "source", "delay_s", "above", "below"):
        value = getattr(args, key)
        if value is not None:
            job[key] = value
    answer = _call(config, "POST", "/admin/jobs", {"job": job})
    print(f"job {answer['added']} added")
    return EXIT_OK


def cmd_job_list(args: argparse.Namespace, config: pi_config.PiConfig) -> int:
    answer = _call(config, "GET", "/admin/jobs")
    if args.json:
        print(json.dumps(answer, indent=1))
        return EXIT_OK
    for job in answer["jobs"]:
        trigger = (f"at {job['at']}" if job.get("at") and not job.get("after") else
                   f"reading {job['reading']}" if job.get("reading") else "follow-up")
        last = job.get("last")
        print(f"{job['id']:18} {job['node']:14} {job['capability']:8} {trigger:18} "
              f"{'then ' + job['then'] if job.get('then') else '':16} "
              f"{(last['status'] + ' ' + last['id']) if last else 'never run'}"
              f"{'  INVALID: ' + job['invalid'] if job.get('invalid') else ''}")
    return EXIT_OK


def cmd_job_rm(args: argparse.Namespace, config: pi_config.PiConfig) -> int:
    _call(config, "POST", "/admin/jobs/rm", {"id": args.id})
    print(f"job {args.id} removed")
    return EXIT_OK


# -- flash -----------------------------------------------------------------------------------------

def default_pi_url(config: pi_config.PiConfig, nodes: NodesConfig) -> str:
    if nodes.url:
        return nodes.url
    return f"http://{config.pi.address}:{nodes.listen.port}"


def _wifi_password(args: argparse.Namespace) -> str | None:
    if args.wifi_ssid is None:
        return None
    if args.wifi_password_file is not None:
        return str(args.wifi_password_file.read_text().strip())
    if "EDGEPAIR_WIFI_PASSWORD" in os.environ:
        return os.environ["EDGEPAIR_WIFI_PASSWORD"]
    if args.dry_run or not sys.stdin.isatty():
        return ""
    return getpass.getpass(f"Wi-Fi password for {args.wifi_ssid}: ")


def cmd_flash(args: argparse.Namespace, config: pi_config.PiConfig) -> int:
    nodes = config.nodes
    assert nodes is not None
    caps = dict(flashing.parse_capability(spec) for spec in args.capability)
    if not caps:
        raise ValidationError("expected at least one --capability (relay, motor, input, "
                              "temperature, analog)", "--capability")
    hwid = args.hwid or flashing.hardware_id()
    code = flashing.pairing_code()
    node_config = flashing.node_config(
        hwid=hwid, code=code, pi_url=args.pi_url or default_pi_url(config, nodes),
        capabilities=caps, poll_s=nodes.poll_s, lost_after_s=nodes.lost_after_s,
        wifi_ssid=args.wifi_ssid, wifi_password=_wifi_password(args))
    folder = args.out or Path(tempfile.mkdtemp(prefix=f"edgepair-{hwid}-"))
    bundle = flashing.write_bundle(folder, node_config, args.firmware)
    steps = flashing.commands(bundle, args.port, erase=args.erase, image=args.image)
    shown = {**node_config, "wifi": {**node_config["wifi"], "password": "***"}}
    print(f"bundle: {folder}")
    for path in bundle.files():
        print(f"  {path.name}")
    print("config.json:\n" + json.dumps(shown, indent=1))
    for step in steps:
        print("$ " + shlex.join(step))
        if not args.dry_run:
            done = subprocess.run(step, check=False)
            if done.returncode != 0:
                print(f"edgepair: {step[0]} failed (exit {done.returncode})", file=sys.stderr)
                return EXIT_FAILED
    print(f"hardware id: {hwid}\npairing code: {code}")
    print(f"next: power the board; then  edgepair node approve {hwid} --code {code} "
          "--name NAME --role ROLE")
    return EXIT_OK
