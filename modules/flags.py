"""Command-line flags, in the A1111 spelling users already know.

``parse_flags`` never prints a usage dump or a traceback: a bad or conflicting flag raises
:class:`FlagError` with one line that says what is wrong; ``launch.py`` prints it and exits 2.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence


class FlagError(ValueError):
    """A bad or conflicting command-line flag (message is one line)."""


@dataclass(frozen=True)
class Flags:
    port: int | None = None
    listen: bool = False
    api: bool = False
    nowebui: bool = False
    ckpt: Path | None = None
    ckpt_dir: Path | None = None
    lora_dir: Path | None = None
    data_dir: Path | None = None
    api_auth: tuple[tuple[str, str], ...] = ()
    gradio_auth: tuple[tuple[str, str], ...] = ()
    share: bool = False
    ngrok: str | None = None
    insecure: bool = False
    use_cpu: tuple[str, ...] = ()
    no_half: bool = False
    lowvram: bool = False
    medvram: bool = False
    offline: bool = False
    allow_pickle: bool = False
    skip_load_model_at_start: bool = False
    api_keys: tuple[str, ...] = ()
    cors_allow_origins: tuple[str, ...] = ()
    cors_allow_origins_regex: str | None = None
    allowed_hosts: tuple[str, ...] = ()
    enable_extensions: tuple[str, ...] = ()
    backend: str | None = None  # --backend: the UNet backend of every model without its own choice
    disable_extensions: bool = False
    enable_insecure_extension_access: bool = False
    max_queue: int = 256
    max_queue_per_user: int = 64
    max_pixels: int = 2048 * 2048
    max_images: int = 64
    max_body_mb: int = 64
    min_free_space_mb: int | None = None  # None: the min_free_space_mb setting decides
    model_memory_mb: int | None = None  # None: most of the device's memory (modules.models.slots)
    theme: str | None = None  # "light" or "dark": the page's theme, over the theme setting
    allowed_dirs: tuple[Path, ...] = ()  # folders batch jobs may read and write besides the data dir
    ray: str | None = None  # --ray auto|ADDRESS: the device lane's generations run on Ray actors (modules/distributed)
    ray_cpu_actors: int | None = None  # --ray-cpu-actors N: N CPU actors instead of one per GPU (tests, CPU hosts)

    @property
    def host(self) -> str:
        return "0.0.0.0" if self.listen else "127.0.0.1"

    @property
    def effective_port(self) -> int:
        if self.port is not None:
            return self.port
        return 7861 if self.nowebui else 7860

    @property
    def api_enabled(self) -> bool:
        return self.api or self.nowebui

    @property
    def api_auth_enabled(self) -> bool:
        """API credentials are required (HTTP Basic users and/or API keys)."""
        return bool(self.api_auth or self.api_keys)

    @property
    def memory_mode(self) -> str:
        return "lowvram" if self.lowvram else "medvram" if self.medvram else "normal"

    @property
    def is_public(self) -> bool:
        return self.listen or self.share or bool(self.ngrok)

    @property
    def extension_install_allowed(self) -> bool:
        """Installing code from a URL: only for a studio not reachable from the network, unless opted in."""
        return not self.is_public or self.enable_insecure_extension_access


class _OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise FlagError(message)


def _credentials(value: str, flag: str) -> tuple[tuple[str, str], ...]:
    pairs: list[tuple[str, str]] = []
    for item in value.split(","):
        item = item.strip()
        if not item:
            continue
        user, sep, password = item.partition(":")
        if not sep or not user or not password:
            raise FlagError(f"{flag} expects 'user:password[,user2:password2]', got {item!r}")
        pairs.append((user, password))
    if not pairs:
        raise FlagError(f"{flag} expects 'user:password[,user2:password2]'")
    return tuple(pairs)


def _build_parser() -> argparse.ArgumentParser:
    p = _OneLineParser(prog="launch.py", description="Atelier: a local-first AI image studio",
                       allow_abbrev=False)
    p.add_argument("--port", type=int, help="port to serve on (default 7860; 7861 with --nowebui)")
    p.add_argument("--listen", action="store_true",
                   help="listen on 0.0.0.0 instead of 127.0.0.1 (requires auth or --insecure)")
    p.add_argument("--api", action="store_true", help="serve the A1111-compatible REST API (/sdapi/v1)")
    p.add_argument("--nowebui", action="store_true", help="serve only the API, no web UI")
    p.add_argument("--ckpt", type=Path, help="checkpoint to load at start")
    p.add_argument("--ckpt-dir", type=Path, help="folder with checkpoints (default models/Stable-diffusion)")
    p.add_argument("--lora-dir", type=Path, help="folder with LoRA files (default models/Lora)")
    p.add_argument("--data-dir", type=Path, help="base folder for settings, caches, outputs and models")
    p.add_argument("--api-auth", help="HTTP Basic credentials for the API, 'user:pass[,user2:pass2]'")
    p.add_argument("--gradio-auth", help="login for the web UI, 'user:pass[,user2:pass2]'")
    p.add_argument("--share", action="store_true", help="make a public Gradio share link (requires auth or --insecure)")
    p.add_argument("--ngrok", metavar="TOKEN",
                   help="make a public ngrok tunnel with this ngrok auth token (requires auth or --insecure)")
    p.add_argument("--insecure", action="store_true",
                   help="allow --listen/--share/--ngrok without any auth (prints a warning)")
    p.add_argument("--use-cpu", nargs="*", metavar="MODULE", default=None,
                   help="run on the CPU ('all' or module names, as in A1111)")
    p.add_argument("--no-half", action="store_true", help="keep weights in float32")
    p.add_argument("--lowvram", action="store_true", help="lowest memory use: sequential offload")
    p.add_argument("--medvram", action="store_true", help="less memory: model offload")
    p.add_argument("--offline", action="store_true", help="never touch the network (the default behaviour is already offline for models)")
    p.add_argument("--allow-pickle", action="store_true",
                   help="allow loading pickle .ckpt/.pt files (with torch weights_only=True)")
    p.add_argument("--ray", metavar="auto|ADDRESS", default=None,
                   help="run generations on a Ray cluster's GPUs: 'auto' (a local Ray, or the one RAY_ADDRESS names) "
                        "or a cluster's address (see docs/scaling.md)")
    p.add_argument("--ray-cpu-actors", type=int, metavar="N", default=None,
                   help="with --ray: N CPU actors instead of one actor per GPU")
    p.add_argument("--skip-load-model-at-start", action="store_true",
                   help="do not load a checkpoint at start")
    p.add_argument("--api-key", action="append", default=None, metavar="KEY",
                   help="accept this API key (repeatable), sent as 'Authorization: Bearer KEY' or 'X-API-Key: KEY'")
    p.add_argument("--cors-allow-origins", metavar="ORIGINS",
                   help="comma-separated origins allowed to call the API from a browser (default: none)")
    p.add_argument("--cors-allow-origins-regex", metavar="REGEX",
                   help="regular expression of origins allowed to call the API from a browser")
    p.add_argument("--allowed-hosts", action="append", default=None, metavar="HOSTS",
                   help="extra host names the studio answers to without auth (repeatable or comma-separated; "
                        "'.example.lan' or '*.example.lan' also allows subdomains); localhost and IP addresses always work")
    p.add_argument("--backend", choices=("torch", "onnx", "openvino"), default=None,
                   help="run the UNet on PyTorch, ONNX Runtime or OpenVINO (exported once per model and checked "
                        "against PyTorch; default: the sd_backend setting)")
    p.add_argument("--enable-extension", action="append", default=None, metavar="NAME",
                   help="approve and run this extension or user script (repeatable; its current content is approved)")
    p.add_argument("--disable-extensions", action="store_true",
                   help="run no extension or user script this time (the built-in scripts still run)")
    p.add_argument("--enable-insecure-extension-access", action="store_true",
                   help="allow installing extensions from a git URL even with --listen/--share/--ngrok")
    p.add_argument("--max-queue", type=int, default=256, metavar="N", help="most jobs waiting in the queue (default 256)")
    p.add_argument("--max-queue-per-user", type=int, default=64, metavar="N",
                   help="most jobs waiting for one user or API key (default 64)")
    p.add_argument("--max-pixels", type=int, default=2048 * 2048, metavar="N",
                   help="largest image a job may ask for, width x height (default 4194304 = 2048x2048)")
    p.add_argument("--max-images", type=int, default=64, metavar="N",
                   help="most images one job may ask for, batch size x batch count (default 64)")
    p.add_argument("--max-body-mb", type=int, default=64, metavar="MB",
                   help="largest request body the API accepts, in MiB (default 64)")
    p.add_argument("--min-free-space-mb", type=int, default=None, metavar="MB",
                   help="refuse new jobs (HTTP 507) and hold waiting ones while less than this is free where jobs "
                        "write; 0 turns the check off (default: the min_free_space_mb setting, 64)")
    p.add_argument("--model-memory-mb", type=int, default=None, metavar="MB",
                   help="memory all loaded models together may take (checkpoint, refiner, ControlNets, ...); the "
                        "least recently used is unloaded to stay under it (default: 85%% of the GPU's, 60%% of RAM)")
    p.add_argument("--allowed-dir", action="append", default=None, type=Path, metavar="PATH",
                   help="a folder (with its sub-folders) that batch jobs may read from and write to by path, "
                        "besides the data dir; repeatable")
    p.add_argument("--theme", choices=("light", "dark"), default=None,
                   help="the web UI's theme (default: the theme setting, which follows the browser)")
    return p


def _api_keys(values: list[str] | None) -> tuple[str, ...]:
    keys = []
    for value in values or ():
        key = value.strip()
        if len(key) < 8 or any(ch.isspace() for ch in key):
            raise FlagError("--api-key expects a key of at least 8 characters without spaces")
        keys.append(key)
    return tuple(keys)


def _allowed_hosts(values: list[str] | None) -> tuple[str, ...]:
    """``--allowed-hosts`` entries, lower-cased, without a trailing dot; ``.name`` is stored as ``*.name``.
    IP addresses are dropped: they are always accepted. Why the Host header matters: :mod:`modules.api.host_guard`."""
    import ipaddress
    import re

    label = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
    host_name = re.compile(rf"^{label}(?:\.{label})*$")
    hosts: list[str] = []
    for item in (part.strip() for value in values or () for part in value.split(",")):
        if not item:
            continue
        if item == "*":
            raise FlagError("--allowed-hosts '*' would turn the DNS-rebinding check off: list the host names, "
                            "or require logins (--gradio-auth, --api-auth)")
        entry = item.lower()
        wildcard = entry.startswith(("*.", "."))
        name = entry.removeprefix("*").removeprefix(".") if wildcard else entry
        name = name[:-1] if name.endswith(".") else name  # a fully qualified name's final dot
        try:
            ipaddress.ip_address(name.strip("[]"))
            continue
        except ValueError:
            pass
        if ":" in name:
            raise FlagError(f"--allowed-hosts expects host names without a port, like 'studio.lan', got {item!r}")
        if len(name) > 253 or not host_name.match(name):
            raise FlagError(f"--allowed-hosts expects host names like 'studio.lan' or '.studio.lan' (for its "
                            f"subdomains too), comma-separated, got {item!r}")
        normal = "*." + name if wildcard else name
        if normal not in hosts:
            hosts.append(normal)
    return tuple(hosts)


def _allowed_dirs(values: list[Path] | None) -> tuple[Path, ...]:
    """``--allowed-dir`` folders, symlinks resolved; each must exist and be a folder."""
    dirs: list[Path] = []
    for path in values or ():
        if not path.is_dir():
            raise FlagError(f"--allowed-dir: {path} is not an existing folder")
        real = path.resolve()
        if real not in dirs:
            dirs.append(real)
    return tuple(dirs)


def _not_negative(name: str, value: int | None) -> int | None:
    if value is not None and value < 0:
        raise FlagError(f"{name} must be 0 or more, got {value}")
    return value


def _positive(name: str, value: int) -> int:
    if value < 1:
        raise FlagError(f"{name} must be at least 1, got {value}")
    return value


def _cors(value: str | None, regex: str | None) -> tuple[tuple[str, ...], str | None]:
    import re

    origins = tuple(o.strip().rstrip("/") for o in (value or "").split(",") if o.strip())
    for origin in origins:
        if origin != "*" and not re.match(r"^https?://[^/\s]+$", origin):
            raise FlagError(f"--cors-allow-origins expects origins like 'http://localhost:3000', got {origin!r}")
    if regex is not None:
        try:
            re.compile(regex)
        except re.error as exc:
            raise FlagError(f"--cors-allow-origins-regex is not a valid regular expression: {exc}") from None
    return origins, regex


def parse_flags(argv: Sequence[str]) -> Flags:
    """Parse and validate ``argv`` (without the program name)."""
    ns = _build_parser().parse_args(list(argv))
    if ns.port is not None and not 1 <= ns.port <= 65535:
        raise FlagError(f"--port must be between 1 and 65535, got {ns.port}")
    if ns.lowvram and ns.medvram:
        raise FlagError("--lowvram and --medvram cannot be used together: pick one")
    if ns.nowebui and ns.gradio_auth:
        raise FlagError("--gradio-auth has no effect with --nowebui: use --api-auth to protect the API")
    if ns.nowebui and ns.share:
        raise FlagError("--share needs the web UI: it cannot be combined with --nowebui")
    if ns.ngrok is not None and (not ns.ngrok.strip() or any(ch.isspace() for ch in ns.ngrok.strip())):
        raise FlagError("--ngrok expects your ngrok auth token (from dashboard.ngrok.com), without spaces")
    api_auth = _credentials(ns.api_auth, "--api-auth") if ns.api_auth else ()
    gradio_auth = _credentials(ns.gradio_auth, "--gradio-auth") if ns.gradio_auth else ()
    for flag, path, want_dir in (("--ckpt", ns.ckpt, False), ("--ckpt-dir", ns.ckpt_dir, True),
                                 ("--lora-dir", ns.lora_dir, True)):
        if path is None:
            continue
        if not path.exists():
            raise FlagError(f"{flag}: {path} does not exist")
        if want_dir and not path.is_dir():
            raise FlagError(f"{flag}: {path} is not a folder")
    if ns.data_dir is not None and ns.data_dir.exists() and not ns.data_dir.is_dir():
        raise FlagError(f"--data-dir: {ns.data_dir} is not a folder")
    use_cpu = tuple(ns.use_cpu) if ns.use_cpu is not None else ()
    if ns.use_cpu is not None and not use_cpu:
        use_cpu = ("all",)
    cors_origins, cors_regex = _cors(ns.cors_allow_origins, ns.cors_allow_origins_regex)
    flags = Flags(
        port=ns.port, listen=ns.listen, api=ns.api, nowebui=ns.nowebui, ckpt=ns.ckpt,
        ckpt_dir=ns.ckpt_dir, lora_dir=ns.lora_dir, data_dir=ns.data_dir, api_auth=api_auth,
        gradio_auth=gradio_auth, share=ns.share, ngrok=ns.ngrok.strip() if ns.ngrok else None, insecure=ns.insecure, use_cpu=use_cpu,
        no_half=ns.no_half, lowvram=ns.lowvram, medvram=ns.medvram, offline=ns.offline,
        allow_pickle=ns.allow_pickle, skip_load_model_at_start=ns.skip_load_model_at_start,
        api_keys=_api_keys(ns.api_key), cors_allow_origins=cors_origins, cors_allow_origins_regex=cors_regex,
        allowed_hosts=_allowed_hosts(ns.allowed_hosts),
        backend=ns.backend,
        enable_extensions=tuple(name.strip() for value in (ns.enable_extension or []) for name in value.split(",")
                                if name.strip()),
        disable_extensions=ns.disable_extensions,
        enable_insecure_extension_access=ns.enable_insecure_extension_access,
        max_queue=_positive("--max-queue", ns.max_queue),
        max_queue_per_user=_positive("--max-queue-per-user", ns.max_queue_per_user),
        max_pixels=_positive("--max-pixels", ns.max_pixels), max_images=_positive("--max-images", ns.max_images),
        max_body_mb=_positive("--max-body-mb", ns.max_body_mb),
        min_free_space_mb=_not_negative("--min-free-space-mb", ns.min_free_space_mb),
        model_memory_mb=_positive("--model-memory-mb", ns.model_memory_mb) if ns.model_memory_mb is not None else None,
        theme=ns.theme,
        allowed_dirs=_allowed_dirs(ns.allowed_dir),
        ray=_ray_address(ns.ray, ns.ray_cpu_actors),
        ray_cpu_actors=_positive("--ray-cpu-actors", ns.ray_cpu_actors) if ns.ray_cpu_actors is not None else None,
    )
    _check_exposure(flags)
    return flags


def _ray_address(value: str | None, cpu_actors: int | None) -> str | None:
    if value is None:
        if cpu_actors is not None:
            raise FlagError("--ray-cpu-actors needs --ray auto (or --ray ADDRESS)")
        return None
    value = value.strip()
    if not value or any(ch.isspace() for ch in value):
        raise FlagError("--ray expects 'auto' or a Ray cluster's address (host:port or ray://host:10001)")
    return value


def _check_exposure(flags: Flags) -> None:
    """Refuse to listen publicly or share without auth unless the user opts out with --insecure."""
    if not flags.is_public or flags.insecure:
        return
    how = "--listen" if flags.listen else "--share" if flags.share else "--ngrok"
    if flags.nowebui:
        if not flags.api_auth_enabled:
            raise FlagError(f"{how} exposes the API to the network: add --api-auth user:pass or --api-key KEY (or --insecure to accept the risk)")
        return
    if not flags.gradio_auth:
        raise FlagError(f"{how} exposes the studio to the network: add --gradio-auth user:pass (or --insecure to accept the risk)")
    if flags.api_enabled and not flags.api_auth_enabled:
        raise FlagError(f"{how} with --api exposes the API too: add --api-auth user:pass or --api-key KEY (or --insecure to accept the risk)")
