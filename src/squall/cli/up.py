"""``squall up``: start everything in one command (embedded default: SQLite in the data dir, no other services)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import io
import logging
import os
import signal
import socket
import zipfile
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.logging import RichHandler
from rich.panel import Panel

from squall.core.config import ServerConfig

if TYPE_CHECKING:  # imported by run(): every other command builds this parser without loading the server (~1 s)
    import uvicorn

    from squall.app import Squall

__all__ = ["add_parser", "bind_listener", "run"]

DEMO_DIR = Path(__file__).resolve().parent.parent / "demo"


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("up", help="start Squall (Lambda API and everything else on one port)")
    p.add_argument("--data-dir", type=Path, help="where state lives (env SQUALL_DATA_DIR; default ~/.squall)")
    p.add_argument(
        "--database-url",
        help="PostgreSQL URL for all state instead of SQLite (cluster mode; env SQUALL_DATABASE_URL)",
    )
    p.add_argument("--port", type=int, help="HTTP port (env SQUALL_PORT; default 9070)")
    p.add_argument("--host", help="address to bind (env SQUALL_HOST; default 127.0.0.1)")
    p.add_argument(
        "--nats-url", help="join a cluster: NATS JetStream URLs, comma-separated (env SQUALL_NATS_URL; default: none)"
    )
    p.add_argument("--node-id", help="this node's name in the cluster (env SQUALL_NODE_ID; default hostname:port)")
    p.add_argument("--demo", action="store_true", help="deploy the 'hello' demo function and invoke it once")
    p.set_defaults(func=run)


def _demo_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.write(DEMO_DIR / "app.py", "app.py")
    return buf.getvalue()


async def _deploy_demo(squall: Squall, console: Console) -> None:
    from squall.core.errors import ResourceNotFound
    from squall.iam.roles import ensure_role_in_store

    svc = squall.functions
    try:
        await svc.get_function_configuration("hello")
    except ResourceNotFound:
        # hello makes no AWS calls: its role allows nothing
        role = await asyncio.to_thread(ensure_role_in_store, squall.iam_store, squall.config.account_id, "hello", [])
        await svc.create_function(
            {"FunctionName": "hello", "Runtime": "python3.11", "Handler": "app.handler", "Role": role,
             "Code": {"ZipFile": _demo_zip()}, "MemorySize": 128, "Timeout": 3}
        )  # fmt: skip
    result = await squall.invoker.invoke("hello", None, b'{"name": "Squall"}')
    console.print(f"[bold green]demo[/] function [bold]hello[/] deployed and invoked: {result.payload.decode()}")
    await _deploy_thumbnails_demo(squall, console)


async def _deploy_thumbnails_demo(squall: Squall, console: Console) -> None:
    """The showcase: examples/thumbnails (Pillow vendored by pip) wired to uploads under s3://photos/originals/."""
    import squall as squall_pkg
    from squall.cli.packaging import build_package
    from squall.cli.project import load_project
    from squall.core.errors import ResourceNotFound, SquallError
    from squall.iam.roles import ensure_role_in_store
    from squall.s3.errors import BucketAlreadyOwnedByYou

    example = Path(squall_pkg.__file__).resolve().parents[2] / "examples" / "thumbnails"
    if not (example / "app.py").is_file():
        console.print("[yellow]demo[/] thumbnails skipped: examples/thumbnails not found (needs a source checkout)")
        return
    svc = squall.functions
    try:
        config = await svc.get_function_configuration("thumbnails")
    except ResourceNotFound:
        console.print("[dim]demo: building thumbnails (vendoring Pillow with pip)...[/]")
        try:
            data, _ = await asyncio.to_thread(
                build_package, example, example / "requirements.txt", squall.config.data_dir / "build-cache"
            )
        except SquallError as e:
            first = (e.message.strip().splitlines() or ["unknown error"])[0]
            console.print(f"[yellow]demo[/] thumbnails skipped: could not build the package: {first}")
            return
        # the role examples/thumbnails/squall.yaml declares: read photos/originals/*, write photos/thumbnails/*
        policies = load_project(example / "squall.yaml").function("thumbnails").policies
        role = await asyncio.to_thread(
            ensure_role_in_store, squall.iam_store, squall.config.account_id, "thumbnails", policies
        )
        config = await svc.create_function(
            {"FunctionName": "thumbnails", "Runtime": "python3.11", "Handler": "app.handler",
             "Role": role, "Code": {"ZipFile": data}, "MemorySize": 512,
             "Timeout": 30}
        )  # fmt: skip
    arn = str(config["FunctionArn"]).split(":$LATEST")[0]
    with contextlib.suppress(BucketAlreadyOwnedByYou):
        await asyncio.to_thread(squall.objects.create_bucket, "photos", squall.config.region)
    notification = {
        "LambdaFunctionConfigurations": [
            {"Id": "thumbnails", "LambdaFunctionArn": arn, "Events": ["s3:ObjectCreated:*"],
             "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "originals/"}]}}}
        ]
    }  # fmt: skip
    await asyncio.to_thread(squall.objects.put_bucket_notification, "photos", notification)
    url = squall.config.public_url
    console.print(
        f"[bold green]demo[/] function [bold]thumbnails[/] deployed: upload a JPEG under s3://photos/originals/ and"
        f" a 300x300 thumbnail appears under thumbnails/\n"
        f"  aws s3 cp photo.jpg s3://photos/originals/photo.jpg --endpoint-url {url}\n"
        f"  aws s3 ls s3://photos/thumbnails/ --endpoint-url {url}"
    )


def _banner(squall: Squall, console: Console) -> None:
    c = squall.config
    cred = squall.credentials
    url = c.public_url
    console.print(
        Panel.fit(
            f"[bold]Squall[/] is up at [cyan]{url}[/]  (data: {c.data_dir})\n\n"
            f"Point boto3 / the AWS CLI at it:\n"
            f"  export AWS_ENDPOINT_URL={url}\n"
            f"  export AWS_ACCESS_KEY_ID={cred.access_key_id}\n"
            f"  export AWS_SECRET_ACCESS_KEY={cred.secret_access_key}\n"
            f"  export AWS_DEFAULT_REGION={c.region}\n\n"
            f"Deploy:  squall deploy ./my-function --handler app.handler\n"
            f'Invoke:  squall invoke hello --payload \'{{"name": "you"}}\'\n'
            f"Logs:    squall logs hello --follow",
            title="squall up",
        )
    )


def bind_listener(host: str, port: int) -> socket.socket:
    """The server's listening socket, bound before anything else starts (so a port in use is one clear line, and no
    other process can take the port between a check and uvicorn's own bind); uvicorn serves on it."""
    from squall.cli.client import CliError

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise CliError(f"cannot resolve --host {host!r}: {e.strerror}") from None
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: TIME_WAIT is no conflict
        sock.bind(address)
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise CliError(f"port {port} is in use; pass --port or stop the other server") from None
        if e.errno == errno.EACCES:
            raise CliError(f"cannot listen on {host}:{port}: permission denied; pass --port above 1023") from None
        if e.errno == errno.EADDRNOTAVAIL:
            raise CliError(f"cannot listen on {host}:{port}: this machine has no such address; check --host") from None
        raise CliError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    sock.set_inheritable(True)
    return sock


async def _serve_gateway(server: uvicorn.Server, squall: Squall) -> None:
    """Serve the socket the node's gateway address listens on (network "nat") with the same protocol and state as
    the main listener; uvicorn closes it with its own at shutdown."""
    sock = squall.gateway_socket
    if sock is None:
        return
    config = server.config

    def protocol() -> asyncio.Protocol:
        return config.http_protocol_class(  # type: ignore[call-arg]
            config=config, server_state=server.server_state, app_state=server.lifespan.state
        )

    extra = await asyncio.get_running_loop().create_server(protocol, sock=sock, backlog=config.backlog)
    server.servers.append(extra)


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from squall.app import Squall
    from squall.aws.http_protocol import EdgeLimits, edge_protocol

    console = Console(stderr=True)
    logging.basicConfig(
        level=logging.INFO, format="%(message)s", handlers=[RichHandler(console=console, show_path=False)]
    )
    cfg = ServerConfig()
    if args.data_dir:
        cfg = replace(cfg, data_dir=args.data_dir)
    if args.database_url:
        cfg = replace(cfg, database_url=args.database_url)
    if args.port:
        cfg = replace(cfg, port=args.port)
    if args.host:
        cfg = replace(cfg, host=args.host)
    if getattr(args, "nats_url", None):
        cfg = replace(cfg, nats_url=args.nats_url)
    if getattr(args, "node_id", None):
        cfg = replace(cfg, node_id=args.node_id)
    if not 0 < cfg.port < 65536:
        from squall.cli.client import CliError

        raise CliError(f"invalid port {cfg.port}: use 1..65535")
    listener = bind_listener(cfg.host, cfg.port)
    if os.geteuid() != 0:
        console.print("[yellow]not running as root: instances are not sandboxed (see the log for what is missing)[/]")
    squall = Squall(cfg)
    app = squall.asgi()
    config = uvicorn.Config(
        app, host=cfg.host, port=cfg.port, log_level="warning", lifespan="on", access_log=False,
        timeout_keep_alive=cfg.http_idle_timeout_s,  # type: ignore[arg-type]  # a float works (call_later)
        server_header=False,  # AWS answers without "server: uvicorn" (S3 sets its own); one header less per response
    )  # fmt: skip
    limits = EdgeLimits(
        max_request_line=cfg.http_max_request_line,
        max_header_bytes=cfg.http_max_header_bytes,
        header_timeout_s=cfg.http_header_timeout_s,
        body_timeout_s=cfg.http_body_timeout_s,
        max_connections=cfg.http_max_connections,
    )
    # one socket write per response, and the edge's limits before any request reaches the app (edge/http_protocol.py)
    config.http = edge_protocol(limits)
    server = uvicorn.Server(config)

    # uvicorn handles SIGINT/SIGTERM (graceful shutdown: lifespan stops instances and flushes records), then
    # re-raises the signal for whoever handled it before; with these no-op handlers that ends in a clean exit 0
    signal.signal(signal.SIGTERM, lambda *_: None)
    signal.signal(signal.SIGINT, lambda *_: None)

    async def main() -> None:
        serve = asyncio.create_task(server.serve(sockets=[listener]))
        while not server.started and not serve.done():
            await asyncio.sleep(0.05)
        if server.started:
            await _serve_gateway(server, squall)
            _banner(squall, console)
            if args.demo:
                try:
                    await _deploy_demo(squall, console)
                except Exception as e:
                    console.print(f"[red]demo failed:[/] {e}")
        await serve

    try:
        import uvloop

        uvloop.run(main())
    except ImportError:  # uvicorn[standard] brings uvloop; plain asyncio works, only slower
        asyncio.run(main())
    return 0
